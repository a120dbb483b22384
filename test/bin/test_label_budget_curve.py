"""label_budget_curve: table and plot from synthetic scoring results (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from espnet_bilevel.bin import label_budget_curve

DECODE = "decode_x"


def _exp(root: Path, name: str, wer: dict, cer: float = 10.0, seed=None) -> Path:
    exp = root / name
    if seed is not None:
        exp.mkdir(parents=True)
        (exp / "config.yaml").write_text(f"seed: {seed}\n")
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
    # first table: the plotted test WER per system, and how many runs a cell holds
    plotted, full = md.split("WER and CER (%) on every set:")
    assert plotted.startswith("test WER (%)")
    assert "| labeled utts | supervised test WER | bljust test WER | runs per cell |" in plotted
    assert "| 25 | 62.0 ± 2.8 | 45.0 | 1/2 |" in plotted and "| 100 | 35.0 | - | 1 |" in plotted
    row25 = next(line for line in full.splitlines() if line.startswith("| 25 "))
    assert "62.0 ± 2.8" in row25 and "45.0" in row25
    row100 = next(line for line in full.splitlines() if line.startswith("| 100 "))
    assert row100.count("| - ") == 4  # bljust has no 100-utterance point: its 4 cells are "-"
    # runs without a training seed are not paired
    assert "Paired by seed" not in md and not (out / "label_budget_paired.json").exists()
    assert (out / "label_budget_wer.png").stat().st_size > 1000


def test_paired_by_seed_per_budget(tmp_path):
    def runs(system, n, test_wers):
        return ",".join(str(_exp(tmp_path, f"{system}_n{n}_seed{k}", {"dev": w + 1, "test": w}, seed=k))
                        for k, w in zip((1, 2, 3), test_wers))

    out = tmp_path / "out"
    rc = label_budget_curve.main([
        "--point", f"sup:25={runs('sup', 25, [60.0, 62.0, 64.0])}",
        "--point", f"bl:25={runs('bl', 25, [55.0, 59.0, 65.0])}",  # better on seeds 1 and 2
        "--point", f"sup:50={runs('sup', 50, [40.0, 41.0, 42.0])}",
        "--point", f"bl:50={_exp(tmp_path, 'bl_n50_single', {'dev': 1.0, 'test': 1.0}, seed=7)}",
        "--decode_dir", DECODE, "--test_sets", "dev", "test", "--out_dir", str(out),
    ])
    assert rc == 0
    paired = json.loads((out / "label_budget_paired.json").read_text())
    assert set(paired) == {"25"}  # at 50, bl has a single run: nothing to pair
    (pair,) = paired["25"]["pairs"]
    assert (pair["a"], pair["b"], pair["seeds"]) == ("sup", "bl", [1, 2, 3])
    test = pair["wer"]["test"]
    assert test["diffs"] == [-5.0, -3.0, 1.0] and test["b_better"] == 2
    assert test["mean"] == pytest.approx(-7 / 3) and 0.05 < test["p"] < 1
    md = (out / "label_budget.md").read_text()
    assert "Paired by seed, per budget." in md
    assert "| 25 | bl vs sup | 1, 2, 3 | -2.3 ± 3.1 (2/3, p " in md and "| 50 | bl vs sup" not in md
    # rerun with unseeded single runs: the earlier pairs are not left behind
    rc = label_budget_curve.main([
        "--point", f"sup:25={_exp(tmp_path, 'plain', {'dev': 1.0, 'test': 2.0})}",
        "--decode_dir", DECODE, "--test_sets", "dev", "test", "--out_dir", str(out),
    ])
    assert rc == 0 and not (out / "label_budget_paired.json").exists()


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


def test_cpu_time_table_adds_the_preceding_run(tmp_path):
    def exp(name, cpu):
        e = _exp(tmp_path, name, {"test": 50.0})
        if cpu is not None:
            (e / "train_cpu_seconds").write_text(f"{cpu}\n")
        return e

    sup = f"{exp('sup_s1', 100)},{exp('sup_s2', 120)}"
    ft = f"{exp('ft_s1', 50)},{exp('ft_s2', 70)}"
    pt = []
    for k, cpu in ((1, 200), (2, 220)):
        (tmp_path / f"pt_s{k}").mkdir()
        (tmp_path / f"pt_s{k}" / "train_cpu_seconds").write_text(f"{cpu}\n")
        pt.append(str(tmp_path / f"pt_s{k}"))
    out = tmp_path / "out"
    common = ["--decode_dir", DECODE, "--test_sets", "test", "--out_dir", str(out)]
    rc = label_budget_curve.main(["--point", f"sup:25={sup}", "--point", f"ptft:25={ft}",
                                  "--pre_point", f"ptft:25={','.join(pt)}", *common])
    assert rc == 0
    js = json.loads((out / "label_budget.json").read_text())
    assert js["sup"]["25"]["cpu_seconds"][:2] == [110.0, pytest.approx(14.142, abs=1e-3)]
    assert js["ptft"]["25"]["cpu_seconds"][0] == 270.0  # PT + FT: (250 + 290) / 2
    md = (out / "label_budget.md").read_text()
    assert "| labeled utts | sup train CPU (s) | ptft train CPU (s) |" in md and "| 25 | 110 ± 14 | 270 ± 28 |" in md
    # a run without train_cpu_seconds makes its cell "-"; none at all: no CPU table
    rc = label_budget_curve.main(["--point", f"sup:25={exp('sup_nocpu', None)}", *common])
    assert rc == 0 and "train CPU" not in (out / "label_budget.md").read_text()
    # preceding runs must match the point's runs one to one
    rc = label_budget_curve.main(["--point", f"ptft:25={ft}", "--pre_point", f"ptft:25={pt[0]}", *common])
    assert rc == 1
    rc = label_budget_curve.main(["--point", f"sup:25={sup}", "--pre_point", f"ptft:25={','.join(pt)}", *common])
    assert rc == 1
