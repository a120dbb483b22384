"""Tests for espnet_bilevel.checkpoints.average_nbest (issue 7).

The experiment used throughout has 5 epochs and two criteria whose 3-best sets overlap:

    valid.loss (min): epochs ranked 5, 4, 3, 2, 1  -> 3-best {3, 4, 5}
    valid.acc  (max): epochs ranked 4, 2, 5, 3, 1  -> 3-best {2, 4, 5}

ESPnet 202511 averages valid.loss first and, in doing so, overwrites its cached copy of
epoch 5 (the best loss epoch) with the sum; valid.acc then reads that corrupted copy.
"""

import inspect
import os
from pathlib import Path

import pytest
import torch
from espnet2.main_funcs.average_nbest_models import (
    average_nbest_models as espnet_average_nbest_models,
)
from espnet2.train.reporter import Reporter

from espnet_bilevel.checkpoints import average_nbest
from espnet_bilevel.checkpoints.average_nbest import (
    average_nbest_models,
    average_state_dicts,
    select_nbest_epochs,
)

NUM_EPOCHS = 5
VALID_LOSS = {1: 5.0, 2: 4.0, 3: 3.0, 4: 2.5, 5: 2.0}
VALID_ACC = {1: 0.5, 2: 0.8, 3: 0.6, 4: 0.9, 5: 0.7}
CRITERIA = [("valid", "loss", "min"), ("valid", "acc", "max")]
LOSS_3BEST = [3, 4, 5]
ACC_3BEST = [2, 4, 5]


def epoch_state(epoch: int) -> dict:
    """A tiny model state dict whose values depend on the epoch.

    Float values are small integers, so any summation order gives the same exact sum and
    the expected mean is one correctly rounded division.
    """
    generator = torch.Generator().manual_seed(1000 + epoch)
    return {
        "encoder.weight": torch.randint(-50, 50, (2, 3), generator=generator).float(),
        "encoder.bias": torch.randint(-50, 50, (3,), generator=generator).double(),
        "norm.running_mean": torch.randint(-50, 50, (3,), generator=generator).half(),
        "norm.num_batches_tracked": torch.tensor(100 * epoch, dtype=torch.int64),
    }


def expected_average(epochs) -> dict:
    """The true average, computed independently of the code under test."""
    states = [epoch_state(e) for e in epochs]
    expected = {}
    for key in states[0]:
        if key == "norm.num_batches_tracked":
            expected[key] = epoch_state(max(epochs))[key]
        else:
            stacked = torch.stack([s[key].double() for s in states])
            expected[key] = (stacked.sum(dim=0) / len(epochs)).to(states[0][key].dtype)
    return expected


def make_reporter() -> Reporter:
    reporter = Reporter()
    for epoch in range(1, NUM_EPOCHS + 1):
        reporter.set_epoch(epoch)
        with reporter.observe("valid") as sub_reporter:
            sub_reporter.register(
                {
                    "loss": torch.tensor(VALID_LOSS[epoch]),
                    "acc": torch.tensor(VALID_ACC[epoch]),
                }
            )
            sub_reporter.next()
    return reporter


def write_epoch_files(exp_dir: Path, epochs=range(1, NUM_EPOCHS + 1)) -> None:
    for epoch in epochs:
        torch.save(epoch_state(epoch), exp_dir / f"{epoch}epoch.pth")


def is_true_average(path: Path, epochs) -> bool:
    """Exact check: float tensors are the mean, the int buffer is the newest epoch's."""
    actual = torch.load(path, map_location="cpu")
    expected = expected_average(epochs)
    return actual.keys() == expected.keys() and all(
        actual[k].dtype == expected[k].dtype and torch.equal(actual[k], expected[k])
        for k in expected
    )


def float_tensors_are_true_mean(path: Path, epochs) -> bool:
    actual = torch.load(path, map_location="cpu")
    expected = expected_average(epochs)
    return all(
        torch.equal(actual[k], expected[k]) for k in expected if expected[k].is_floating_point()
    )


def test_reporter_ranks_as_designed():
    reporter = make_reporter()
    assert reporter.sort_epochs("valid", "loss", "min")[:3] == [5, 4, 3]
    assert reporter.sort_epochs("valid", "acc", "max")[:3] == [4, 2, 5]
    assert set(LOSS_3BEST) & set(ACC_3BEST) == {4, 5}
    assert select_nbest_epochs(reporter, CRITERIA, 3) == [
        ("valid", "loss", [(3, [5, 4, 3])]),
        ("valid", "acc", [(3, [4, 2, 5])]),
    ]


def test_average_state_dicts_is_exact_and_does_not_touch_inputs():
    epochs = [2, 4, 5]
    states = [epoch_state(e) for e in epochs]
    states[-1]["config"] = {"newest": True}
    states[0]["config"] = {"newest": False}
    states[1]["config"] = {"newest": False}
    snapshots = [{k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()} for s in states]

    averaged = average_state_dicts(states)

    expected = expected_average(epochs)
    for key, value in expected.items():
        assert averaged[key].dtype == value.dtype
        assert torch.equal(averaged[key], value), key
    assert averaged["norm.num_batches_tracked"].item() == 500
    assert averaged["config"] == {"newest": True}
    assert averaged["config"] is not states[-1]["config"]
    for state, snapshot in zip(states, snapshots):
        for key, value in snapshot.items():
            assert torch.equal(state[key], value) if torch.is_tensor(value) else state[key] == value
    for key in expected:  # nothing returned aliases an input (which may sit in a cache)
        assert all(averaged[key].data_ptr() != s[key].data_ptr() for s in states)


def test_average_state_dicts_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="at least one"):
        average_state_dicts([])
    other = epoch_state(2)
    del other["encoder.bias"]
    with pytest.raises(ValueError, match="different keys"):
        average_state_dicts([other, epoch_state(3)])
    reshaped = epoch_state(2)
    reshaped["encoder.weight"] = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="encoder.weight"):
        average_state_dicts([reshaped, epoch_state(3)])


@pytest.mark.parametrize("nbest", [3, [2, 3]])
def test_overlapping_criteria_give_exact_averages(tmp_path, nbest):
    write_epoch_files(tmp_path)
    epoch_bytes = {e: (tmp_path / f"{e}epoch.pth").read_bytes() for e in range(1, 6)}

    average_nbest_models(
        output_dir=tmp_path, reporter=make_reporter(), best_model_criterion=CRITERIA, nbest=nbest
    )

    assert is_true_average(tmp_path / "valid.loss.ave_3best.pth", LOSS_3BEST)
    assert is_true_average(tmp_path / "valid.acc.ave_3best.pth", ACC_3BEST)
    newest_acc = torch.load(tmp_path / "valid.acc.ave_3best.pth")["norm.num_batches_tracked"]
    assert newest_acc.item() == 500  # epoch 5 is the newest of {2, 4, 5}
    if nbest == [2, 3]:
        assert is_true_average(tmp_path / "valid.loss.ave_2best.pth", [4, 5])
        assert is_true_average(tmp_path / "valid.acc.ave_2best.pth", [2, 4])
    for name in ("valid.loss", "valid.acc"):
        link = tmp_path / f"{name}.ave.pth"
        assert link.is_symlink()
        assert os.readlink(link) == f"{name}.ave_3best.pth"
    # Outputs get the usual umask-based permissions (not a temp file's 0o600).
    ave_mode = (tmp_path / "valid.acc.ave_3best.pth").stat().st_mode & 0o777
    assert ave_mode == (tmp_path / "1epoch.pth").stat().st_mode & 0o777
    # Inputs on disk are untouched and no temporary files are left behind.
    assert all((tmp_path / f"{e}epoch.pth").read_bytes() == b for e, b in epoch_bytes.items())
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize("nbest", [3, [2, 3]])
def test_espnet_reference_is_wrong_for_the_second_criterion(tmp_path, nbest):
    """The same check catches ESPnet 202511's in-place accumulation bug."""
    write_epoch_files(tmp_path)

    espnet_average_nbest_models(
        output_dir=tmp_path, reporter=make_reporter(), best_model_criterion=CRITERIA, nbest=nbest
    )

    loss_ave = tmp_path / "valid.loss.ave_3best.pth"
    acc_ave = tmp_path / "valid.acc.ave_3best.pth"
    if nbest == 3:
        # The first average is still right for the float tensors: the check is not
        # rejecting ESPnet's output wholesale.
        assert float_tensors_are_true_mean(loss_ave, LOSS_3BEST)
    else:
        # The 2-best pass already overwrote the cached best epoch, so even 3-best is wrong.
        assert float_tensors_are_true_mean(tmp_path / "valid.loss.ave_2best.pth", [4, 5])
        assert not float_tensors_are_true_mean(loss_ave, LOSS_3BEST)
    assert not float_tensors_are_true_mean(acc_ave, ACC_3BEST)
    assert not is_true_average(acc_ave, ACC_3BEST)
    if nbest == 3:
        # ESPnet sums the counter instead of keeping one epoch's value.
        assert torch.load(loss_ave)["norm.num_batches_tracked"].item() == 300 + 400 + 500


def test_nbest_one_writes_real_file_and_suffix(tmp_path):
    write_epoch_files(tmp_path)
    # Stock ESPnet leaves its 1-best "average" as a symlink to the epoch file; replacing
    # it must not write through the link into 5epoch.pth.
    (tmp_path / "valid.loss.ave_1best.till5epoch.pth").symlink_to("5epoch.pth")
    epoch5_bytes = (tmp_path / "5epoch.pth").read_bytes()

    average_nbest_models(tmp_path, make_reporter(), CRITERIA, 1, suffix="till5epoch")

    for name, best_epoch in (("valid.loss", 5), ("valid.acc", 4)):
        one_best = tmp_path / f"{name}.ave_1best.till5epoch.pth"
        assert one_best.is_file() and not one_best.is_symlink()
        assert is_true_average(one_best, [best_epoch])
        assert os.readlink(tmp_path / f"{name}.ave.till5epoch.pth") == one_best.name
    assert (tmp_path / "5epoch.pth").read_bytes() == epoch5_bytes


def test_nbest_larger_than_epochs_falls_back_like_espnet(tmp_path):
    write_epoch_files(tmp_path)
    average_nbest_models(tmp_path, make_reporter(), [("valid", "loss", "min")], [3, 10])
    assert is_true_average(tmp_path / "valid.loss.ave_3best.pth", LOSS_3BEST)
    assert not (tmp_path / "valid.loss.ave_10best.pth").exists()
    assert os.readlink(tmp_path / "valid.loss.ave.pth") == "valid.loss.ave_3best.pth"


def test_unreported_criterion_is_skipped(tmp_path):
    write_epoch_files(tmp_path)
    average_nbest_models(tmp_path, make_reporter(), [("train", "loss", "min")], 3)
    assert sorted(os.listdir(tmp_path)) == sorted(f"{e}epoch.pth" for e in range(1, 6))


def test_missing_selected_epoch_is_named_and_nothing_is_written(tmp_path):
    # ESPnet deleted epoch 1 (in no n-best set, fine) but epoch 2 is needed by valid.acc.
    write_epoch_files(tmp_path, epochs=[3, 4, 5])
    with pytest.raises(FileNotFoundError) as excinfo:
        average_nbest_models(tmp_path, make_reporter(), CRITERIA, 3)
    message = str(excinfo.value)
    assert str(tmp_path / "2epoch.pth") in message
    assert "valid.acc.ave_3best" in message
    assert "1epoch.pth" not in message
    assert sorted(os.listdir(tmp_path)) == ["3epoch.pth", "4epoch.pth", "5epoch.pth"]


def test_failed_write_keeps_previous_output(tmp_path, monkeypatch):
    write_epoch_files(tmp_path)
    output = tmp_path / "valid.loss.ave_3best.pth"
    output.write_bytes(b"previous average")

    def crash_mid_write(obj, file_obj):
        file_obj.write(b"half a checkpo")
        raise OSError("disk full")

    monkeypatch.setattr(average_nbest.torch, "save", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        average_nbest_models(tmp_path, make_reporter(), [("valid", "loss", "min")], 3)
    assert output.read_bytes() == b"previous average"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_signature_matches_espnet():
    ours = inspect.signature(average_nbest_models).parameters
    theirs = inspect.signature(inspect.unwrap(espnet_average_nbest_models)).parameters
    assert list(ours) == list(theirs)
    assert [p.default for p in ours.values()] == [p.default for p in theirs.values()]


def test_deepspeed_layout(tmp_path):
    for epoch in range(1, NUM_EPOCHS + 1):
        states_dir = tmp_path / f"checkpoint_{epoch}" / f"{epoch}"
        states_dir.mkdir(parents=True)
        torch.save({"module": epoch_state(epoch)}, states_dir / "mp_rank_00_model_states.pt")
    average_nbest_models(tmp_path, make_reporter(), CRITERIA, 3, use_deepspeed=True)
    assert is_true_average(tmp_path / "valid.loss.ave_3best.pth", LOSS_3BEST)
    assert is_true_average(tmp_path / "valid.acc.ave_3best.pth", ACC_3BEST)


def test_file_level_function_is_reusable(tmp_path):
    write_epoch_files(tmp_path)
    output = tmp_path / "custom.pth"
    returned = average_nbest.average_checkpoint_files(
        [tmp_path / "1epoch.pth", tmp_path / "3epoch.pth"], output
    )
    assert is_true_average(output, [1, 3])
    assert returned.keys() == torch.load(output).keys()
