"""Tests for ``python -m espnet_bilevel.bin.average_checkpoints`` (issue 7).

The fake experiment directory looks like a finished stock-ESPnet run: config.yaml,
checkpoint.pth (with the reporter state) and the epoch files of the n-best union only
(ESPnet deleted 1epoch.pth, which is in neither 3-best set).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from espnet2.train.reporter import Reporter

from espnet_bilevel.bin import average_checkpoints

MODULE = "espnet_bilevel.bin.average_checkpoints"
VALID_LOSS = {1: 5.0, 2: 4.0, 3: 3.0, 4: 2.5, 5: 2.0}  # 3-best: 5, 4, 3
VALID_ACC = {1: 0.5, 2: 0.8, 3: 0.6, 4: 0.9, 5: 0.7}  # 3-best: 4, 2, 5
KEPT_EPOCHS = [2, 3, 4, 5]


def epoch_state(epoch: int) -> dict:
    """Integer-valued floats: every summation order gives the same exact sum."""
    generator = torch.Generator().manual_seed(2000 + epoch)
    return {
        "linear.weight": torch.randint(-50, 50, (3, 2), generator=generator).float(),
        "bn.running_var": torch.randint(1, 50, (3,), generator=generator).float(),
        "bn.num_batches_tracked": torch.tensor(10 * epoch, dtype=torch.int64),
    }


def expected_average(epochs) -> dict:
    states = [epoch_state(e) for e in epochs]
    expected = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            total = torch.stack([s[key].double() for s in states]).sum(dim=0)
            expected[key] = (total / len(states)).to(value.dtype)
        else:
            expected[key] = epoch_state(max(epochs))[key]
    return expected


def assert_true_average(path: Path, epochs) -> None:
    actual = torch.load(path, map_location="cpu")
    expected = expected_average(epochs)
    assert actual.keys() == expected.keys()
    for key in expected:
        assert actual[key].dtype == expected[key].dtype, key
        assert torch.equal(actual[key], expected[key]), key


def make_reporter() -> Reporter:
    reporter = Reporter()
    for epoch in range(1, 6):
        reporter.set_epoch(epoch)
        with reporter.observe("valid") as sub_reporter:
            sub_reporter.register(
                {"loss": torch.tensor(VALID_LOSS[epoch]), "acc": torch.tensor(VALID_ACC[epoch])}
            )
            sub_reporter.next()
    return reporter


@pytest.fixture
def exp_dir(tmp_path) -> Path:
    exp = tmp_path / "asr_train"
    exp.mkdir()
    config = {
        "best_model_criterion": [["valid", "loss", "min"], ["valid", "acc", "max"]],
        "keep_nbest_models": 3,
        "max_epoch": 5,
    }
    (exp / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    torch.save(
        {
            "model": epoch_state(5),
            "reporter": make_reporter().state_dict(),
            "optimizers": [{"state": {}, "param_groups": []}],
            "schedulers": [None],
            "scaler": None,
        },
        exp / "checkpoint.pth",
    )
    for epoch in KEPT_EPOCHS:
        torch.save(epoch_state(epoch), exp / f"{epoch}epoch.pth")
    return exp


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", MODULE, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_reads_config_and_writes_exact_averages(exp_dir):
    result = run_cli(exp_dir)

    assert result.returncode == 0, result.stderr
    assert_true_average(exp_dir / "valid.loss.ave_3best.pth", [3, 4, 5])
    assert_true_average(exp_dir / "valid.acc.ave_3best.pth", [2, 4, 5])
    assert os.readlink(exp_dir / "valid.loss.ave.pth") == "valid.loss.ave_3best.pth"
    assert os.readlink(exp_dir / "valid.acc.ave.pth") == "valid.acc.ave_3best.pth"
    assert "valid.acc.ave_3best.pth: epochs [2, 4, 5]" in result.stdout


def test_cli_missing_selected_epoch_names_it(exp_dir):
    (exp_dir / "2epoch.pth").unlink()

    result = run_cli(exp_dir)

    assert result.returncode == 1
    assert str(exp_dir / "2epoch.pth") in result.stderr
    assert "valid.acc.ave_3best" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(exp_dir.glob("*ave*"))


def test_cli_missing_checkpoint_names_it(exp_dir):
    (exp_dir / "checkpoint.pth").unlink()

    result = run_cli(exp_dir)

    assert result.returncode == 1
    assert f"checkpoint file not found: {exp_dir / 'checkpoint.pth'}" in result.stderr
    assert "Traceback" not in result.stderr


# The remaining cases call main() in-process: same code path, without a 4 s interpreter start.
def test_explicit_criteria_and_nbest_do_not_need_config(exp_dir, capsys):
    (exp_dir / "config.yaml").unlink()

    status = average_checkpoints.main(
        [str(exp_dir), "--best_model_criterion", "valid", "acc", "max", "--nbest", "1", "2"]
    )

    assert status == 0, capsys.readouterr().err
    assert_true_average(exp_dir / "valid.acc.ave_1best.pth", [4])
    assert_true_average(exp_dir / "valid.acc.ave_2best.pth", [2, 4])
    assert os.readlink(exp_dir / "valid.acc.ave.pth") == "valid.acc.ave_2best.pth"
    assert not list(exp_dir.glob("valid.loss.*"))


def test_suffix_option(exp_dir):
    assert average_checkpoints.main([str(exp_dir), "--suffix", "rerun"]) == 0
    assert_true_average(exp_dir / "valid.acc.ave_3best.rerun.pth", [2, 4, 5])
    assert os.readlink(exp_dir / "valid.acc.ave.rerun.pth") == "valid.acc.ave_3best.rerun.pth"


@pytest.mark.parametrize(
    "damage, expected_message",
    [
        (lambda exp: (exp / "config.yaml").unlink(), "config file not found: {exp}/config.yaml"),
        (
            lambda exp: (exp / "config.yaml").write_text("best_model_criterion: [\n"),
            "cannot read config file {exp}/config.yaml",
        ),
        (
            lambda exp: (exp / "checkpoint.pth").write_bytes(b"not a checkpoint"),
            "cannot read checkpoint file {exp}/checkpoint.pth",
        ),
        (
            lambda exp: torch.save({"model": {}}, exp / "checkpoint.pth"),
            "checkpoint file {exp}/checkpoint.pth has no 'reporter' entry",
        ),
        (
            lambda exp: (exp / "4epoch.pth").write_bytes(b"truncated"),
            "cannot read checkpoint file {exp}/4epoch.pth",
        ),
    ],
    ids=["no-config", "bad-config", "bad-checkpoint", "no-reporter", "bad-epoch-file"],
)
def test_expected_errors_are_one_line_messages(exp_dir, capsys, damage, expected_message):
    damage(exp_dir)

    status = average_checkpoints.main([str(exp_dir)])

    err = capsys.readouterr().err
    assert status == 1
    assert expected_message.format(exp=exp_dir) in err
    assert "Traceback" not in err


def test_bad_mode_is_rejected(exp_dir, capsys):
    status = average_checkpoints.main(
        [str(exp_dir), "--best_model_criterion", "valid", "acc", "best"]
    )
    assert status == 1
    assert "mode must be min or max" in capsys.readouterr().err


def test_module_docstring_gives_usage():
    doc = average_checkpoints.__doc__
    assert doc.lstrip().startswith("Re-average")
    assert f"python -m {MODULE} exp/asr_train" in doc
    assert "--best_model_criterion valid acc max" in doc
