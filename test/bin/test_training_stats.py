"""espnet_bilevel.bin.training_stats: reporter values at one epoch, mean ± std over seeds."""
import pytest
import torch

from espnet_bilevel.bin import training_stats


def fake_exp(root, name, per_epoch):
    """per_epoch: {epoch: {"valid": {...}, "train": {...}}} saved like ESPnet's reporter."""
    exp = root / name
    exp.mkdir()
    torch.save({"reporter": {"stats": per_epoch}, "model": {}}, exp / "checkpoint.pth")
    return exp


def run(capsys, *args):
    rc = training_stats.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_last_epoch_mean_std_and_fixed_epoch(tmp_path, capsys):
    a1 = fake_exp(tmp_path, "a1", {1: {"valid": {"h": 3.0}}, 2: {"valid": {"h": 1.0, "u": 0.5}}})
    a2 = fake_exp(tmp_path, "a2", {1: {"valid": {"h": 5.0}}, 2: {"valid": {"h": 3.0, "u": 0.5}}})
    b = fake_exp(tmp_path, "b", {1: {"valid": {"h": 0.25}, "train": {"h": 9.0}}})
    rc, out, _ = run(capsys, "--run", f"a={a1},{a2}", "--run", f"b w2 0={b}", "--key", "valid.h", "--digits", "2")
    assert rc == 0
    assert out.splitlines() == ["| run | runs | epoch | valid.h |", "|---|---|---|---|",
                                "| a | 2 | 2 | 2.00 ± 1.41 |", "| b w2 0 | 1 | 1 | 0.25 |"]
    rc, out, _ = run(capsys, "--run", f"a={a1},{a2}", "--key", "valid.h", "--epoch", "1")
    assert rc == 0 and "| a | 2 | 1 | 4.000 ± 1.414 |" in out


def test_missing_things_are_one_error_naming_them(tmp_path, capsys):
    a = fake_exp(tmp_path, "a", {1: {"valid": {"h": 3.0, "acc": 0.1}}})
    rc, _, err = run(capsys, "--run", f"a={a}", "--key", "valid.nope")
    assert rc == 1 and f"no run reported valid.nope (e.g. {a} reported valid values: acc, h)" in err
    rc, _, err = run(capsys, "--run", f"a={a}", "--key", "valid.h", "--epoch", "7")
    assert rc == 1 and f"{a}: no epoch 7 (epochs 1-1)" in err
    rc, _, err = run(capsys, "--run", f"x={tmp_path / 'none'}", "--key", "valid.h")
    assert rc == 1 and "checkpoint.pth: not found" in err
    with pytest.raises(SystemExit):
        training_stats.main(["--run", f"a={a}", "--key", "h"])
    assert "expected train.NAME or valid.NAME" in capsys.readouterr().err


def test_a_key_some_runs_lack_is_a_dash(tmp_path, capsys):
    birq = fake_exp(tmp_path, "birq", {3: {"valid": {"enh": 1.5, "acc": 0.25}}})
    bestrq = fake_exp(tmp_path, "bestrq", {3: {"valid": {"acc": 0.5}}})
    rc, out, _ = run(capsys, "--run", f"birq={birq}", "--run", f"bestrq={bestrq}",
                     "--key", "valid.enh", "--key", "valid.acc", "--digits", "2")
    assert rc == 0
    assert out.splitlines()[2:] == ["| birq | 1 | 3 | 1.50 | 0.25 |", "| bestrq | 1 | 3 | - | 0.50 |"]
