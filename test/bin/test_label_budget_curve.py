"""label_budget_curve: table and plot from synthetic scoring results (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from espnet_bilevel.bin import label_budget_curve

DECODE = "decode_x"


def _exp(root: Path, name: str, wer: dict, cer: float = 10.0) -> Path:
    exp = root / name
    for s, w in wer.items():
        p = exp / DECODE / s / "scoring" / "result.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({"wer": {"python": {"err": w}}, "cer": {"python": {"err": cer}}}))
    return exp


def test_table_means_and_plot(tmp_path, capsys):
    a1 = _exp(tmp_path, "sup_n25_s1", {"dev": 50.0, "test": 60.0})
    a2 = _exp(tmp_path, "sup_n25_s2", {"dev": 54.0, "test": 64.0})
    b = _exp(tmp_path, "sup_n100", {"dev": 30.0, "test": 35.0})
    c = _exp(tmp_path, "bl_n25", {"dev": 40.0, "test": 45.0})
    out = tmp_path / "out"
    rc = label_budget_curve.main([
        "--point", f"supervised:25={a1},{a2}", "--point", f"supervised:100={b}", "--point", f"bljust:25={c}",
        "--decode_dir", DECODE, "--test_sets", "dev", "test", "--out_dir", str(out),
    ])
    assert rc == 0
    js = json.loads((out / "label_budget.json").read_text())
    mean, std, n = js["supervised"]["25"]["test"]["wer"]
    assert (mean, n) == (62.0, 2) and std == pytest.approx(2.8284, abs=1e-3)
    assert js["supervised"]["100"]["dev"]["wer"][:2] == [30.0, None]
    md = (out / "label_budget.md").read_text()
    row25 = next(line for line in md.splitlines() if line.startswith("| 25 "))
    assert "62.0 ± 2.8" in row25 and "45.0" in row25
    row100 = next(line for line in md.splitlines() if line.startswith("| 100 "))
    assert row100.count("| - ") == 4  # bljust has no 100-utterance point: its 4 cells are "-"
    assert (out / "label_budget_wer.png").stat().st_size > 1000


def test_missing_result_is_one_error(tmp_path, capsys):
    rc = label_budget_curve.main([
        "--point", f"supervised:25={tmp_path / 'nope'}", "--decode_dir", DECODE, "--test_sets", "test",
        "--out_dir", str(tmp_path / "out"),
    ])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR:") and str(tmp_path / "nope") in err


def test_bad_point_syntax():
    with pytest.raises(SystemExit):
        label_budget_curve.main(["--point", "supervised=dir", "--decode_dir", DECODE, "--test_sets", "t", "--out_dir", "o"])
