"""compare_systems with several runs (seeds) per system: mean ± sample std of WER/CER and wall time,
the per-epoch mean curve with error bars, and the argument checks. Inputs are synthetic files in
the layout stages 11-13 write (scoring/result.json, train_wall_seconds, checkpoint.pth)."""
from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Dict, Optional

import pytest
import torch

from espnet_bilevel.bin import compare_systems

DECODE = "decode_x"


def fake_run(root: Path, name: str, wall: Optional[int], errs: Dict[str, Dict[str, float]],
             epoch_cer=(0.5, 0.25), epoch_seconds=(3.0, 3.0), cpu: Optional[int] = None) -> Path:
    """An exp dir with result.json per set ({set: {"wer": x, "cer": y}}), wall time and epochs."""
    exp = root / name
    (exp / "export").mkdir(parents=True)
    torch.save({"encoder.w": torch.zeros(10, 10)}, exp / "export" / "model.pth")
    if wall is not None:
        (exp / "train_wall_seconds").write_text(f"{wall}\n")
    if cpu is not None:
        (exp / "train_cpu_seconds").write_text(f"{cpu}\n")
    for dset, metrics in errs.items():
        d = exp / DECODE / dset / "scoring"
        d.mkdir(parents=True)
        result = {m: {"python": {"err": v}} for m, v in metrics.items()}
        (d / "result.json").write_text(json.dumps(result))
    stats = {e + 1: {"train": {"time": datetime.timedelta(seconds=epoch_seconds[e] - 1)},
                     "valid": {"time": datetime.timedelta(seconds=1), "cer_ctc": epoch_cer[e]}}
             for e in range(len(epoch_cer))}
    torch.save({"reporter": {"stats": stats}, "model": {}, "optimizers": []}, exp / "checkpoint.pth")
    return exp


def compare(tmp_path, *args):
    out = tmp_path / "compare"
    rc = compare_systems.main([*map(str, args), "--decode_dir", DECODE, "--test_sets", "dev", "test",
                               "--out_dir", str(out)])
    return rc, out


def test_mean_std_is_the_sample_std():
    assert compare_systems.mean_std([10.0, 20.0, 30.0]) == (20.0, 10.0)
    mean, std = compare_systems.mean_std([1.0, 2.0])
    assert mean == 1.5 and std == pytest.approx(math.sqrt(0.5))
    assert compare_systems.mean_std([4.0]) == (4.0, None)
    assert compare_systems.mean_std([1.0, None]) == (None, None)
    assert compare_systems.mean_std([1.0, math.nan]) == (None, None)
    assert compare_systems.mean_std([]) == (None, None)


def test_several_seeds_give_mean_and_std(tmp_path):
    # supervised: dev CER 10/20/30 -> 20 ± 10; ptft: FT 100/110/120 s + PT 10/20/30 s -> 130 ± 20
    sup = [fake_run(tmp_path, f"sup_seed{k}", 40 + k,
                    {"dev": {"wer": 30.0 + 2 * k, "cer": 10.0 * k}, "test": {"wer": 50.0, "cer": 25.0}})
           for k in (1, 2, 3)]
    ft = [fake_run(tmp_path, f"ptft_seed{k}", 90 + 10 * k,
                   {"dev": {"wer": 40.0, "cer": 15.0 + k}, "test": {"wer": 60.0 - k, "cer": 30.0}},
                   epoch_cer=(0.4 + 0.1 * k, 0.2 + 0.1 * k))
          for k in (1, 2, 3)]
    pt = [fake_run(tmp_path, f"pt_seed{k}", 10 * k, {}, epoch_cer=(math.nan,), epoch_seconds=(2.0 * k,))
          for k in (1, 2, 3)]
    rc, out = compare(tmp_path, "--system", "supervised=" + ",".join(map(str, sup)),
                      "--system", "ptft=" + ",".join(map(str, ft)), "--pre_exp", "ptft=" + ",".join(map(str, pt)))
    assert rc == 0
    md = (out / "compare.md").read_text()
    assert ("| system | runs | params | train wall time (s) | dev WER (%) | dev CER (%) | test WER (%) "
            "| test CER (%) |") in md
    assert "| supervised | 3 | 0.1 k | 42 ± 1 | 34.0 ± 2.0 | 20.0 ± 10.0 | 50.0 ± 0.0 | 25.0 ± 0.0 |" in md
    assert "| ptft | 3 | 0.1 k | 130 ± 20 | 40.0 ± 0.0 | 17.0 ± 1.0 | 58.0 ± 1.0 | 30.0 ± 0.0 |" in md
    assert "mean ± sample standard deviation" in md

    rows = json.loads((out / "compare.json").read_text())
    s, p = rows
    assert s["n"] == 3 and s["exp"] == [str(e) for e in sup] and len(s["runs"]) == 3
    assert s["scores"]["dev"]["cer"] == pytest.approx(20.0)
    assert s["scores_std"]["dev"]["cer"] == pytest.approx(10.0)
    assert s["scores_std"]["dev"]["wer"] == pytest.approx(2.0)
    assert p["wall_seconds"] == pytest.approx(130.0) and p["wall_seconds_std"] == pytest.approx(20.0)
    assert [r["wall_seconds"] for r in p["runs"]] == [110.0, 130.0, 150.0]
    # mean curve of ptft: epoch 1 at PT time (2, 4, 6 s) + 3 s, CER 0.5/0.6/0.7
    t, cer, t_std, cer_std = p["curve"][0]
    assert t == pytest.approx(7.0) and t_std == pytest.approx(2.0)
    assert cer == pytest.approx(0.6) and cer_std == pytest.approx(0.1)
    assert len(p["curve"]) == 2
    assert (out / "dev_cer_vs_wall_time.png").read_bytes()[:4] == b"\x89PNG"
    # the WER bar plot: mean bars, std error bars, every run as a dot
    bars = compare_systems.wer_bars(rows, ["dev", "test"])
    assert [b["label"] for b in bars] == ["supervised (n=3)", "ptft (n=3)"]
    assert bars[0]["wer"] == [pytest.approx(34.0), pytest.approx(50.0)]
    assert bars[0]["err"] == [pytest.approx(2.0), pytest.approx(0.0)]
    assert bars[0]["runs"] == [[32.0, 34.0, 36.0], [50.0, 50.0, 50.0]]
    assert bars[1]["runs"][1] == [59.0, 58.0, 57.0]
    assert (out / "wer_by_system.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_value_in_one_run_is_a_dash_and_one_run_has_no_std(tmp_path):
    a = fake_run(tmp_path, "a1", 10, {"dev": {"wer": 1.0, "cer": 2.0}, "test": {"wer": 3.0, "cer": 4.0}})
    b = fake_run(tmp_path, "a2", None, {"dev": {"wer": 3.0, "cer": 2.0}, "test": {"wer": 3.0, "cer": 4.0}})
    c = fake_run(tmp_path, "b1", 7, {"dev": {"wer": 5.0, "cer": 6.0}, "test": {"wer": 7.0, "cer": 8.0}},
                 epoch_cer=(0.5, 0.4, 0.3), epoch_seconds=(1.0, 1.0, 1.0))
    rc, out = compare(tmp_path, "--system", f"a={a},{b}", "--system", f"b={c}")
    assert rc == 0
    md = (out / "compare.md").read_text()
    assert "| a | 2 | 0.1 k | - | 2.0 ± 1.4 | 2.0 ± 0.0 | 3.0 ± 0.0 | 4.0 ± 0.0 |" in md
    assert "| b | 1 | 0.1 k | 7 | 5.0 | 6.0 | 7.0 | 8.0 |" in md
    rows = json.loads((out / "compare.json").read_text())
    assert rows[1]["curve"][2][:2] == [pytest.approx(3.0), pytest.approx(0.3)]
    assert rows[1]["curve"][2][2:] == [None, None]


def test_one_run_per_system_keeps_the_single_run_table(tmp_path):
    a = fake_run(tmp_path, "a", 10, {"dev": {"wer": 1.0, "cer": 2.0}, "test": {"wer": 3.0, "cer": 4.0}})
    rc, out = compare(tmp_path, "--system", f"a={a}")
    assert rc == 0
    md = (out / "compare.md").read_text()
    assert "| system | params | train wall time (s) |" in md and "±" not in md
    assert "| a | 0.1 k | 10 | 1.0 | 2.0 | 3.0 | 4.0 |" in md
    row = json.loads((out / "compare.json").read_text())[0]
    assert list(row) == ["system", "exp", "seed", "params", "wall_seconds", "cpu_seconds", "scores", "curve"]
    assert row["seed"] is None  # no config.yaml
    assert row["cpu_seconds"] is None and "CPU" not in md  # no run measured CPU time: no column
    assert not (out / "wer_vs_cpu_time.png").exists() and "wer_vs_cpu_time" not in md  # nothing to plot
    assert compare_systems.wer_bars([row], ["dev", "test"]) == [
        {"label": "a", "wer": [1.0, 3.0], "err": [0.0, 0.0], "runs": [[], []]}]


def test_cpu_time_column_adds_the_pt_half_and_marks_missing_runs(tmp_path):
    res = {"dev": {"wer": 1.0, "cer": 2.0}, "test": {"wer": 3.0, "cer": 4.0}}
    ft = [fake_run(tmp_path, f"ft{k}", 100, res, cpu=80 + 10 * k) for k in (1, 2)]
    pt = [fake_run(tmp_path, f"pt{k}", 50, {}, epoch_cer=(math.nan,), epoch_seconds=(1.0,), cpu=40)
          for k in (1, 2)]
    old = [fake_run(tmp_path, f"old{k}", 60, res, cpu=None if k == 2 else 55) for k in (1, 2)]
    rc, out = compare(tmp_path, "--system", "ptft=" + ",".join(map(str, ft)),
                      "--pre_exp", "ptft=" + ",".join(map(str, pt)), "--system", "old=" + ",".join(map(str, old)))
    assert rc == 0
    md = (out / "compare.md").read_text()
    assert "| system | runs | params | train wall time (s) | train CPU time (s) | dev WER (%) |" in md
    # PT + FT CPU seconds: 130 and 140 -> 135 ± 7; a run without train_cpu_seconds makes the cell "-"
    assert "| ptft | 2 | 0.1 k | 150 ± 0 | 135 ± 7 | 1.0 ± 0.0 |" in md
    assert "| old | 2 | 0.1 k | 60 ± 0 | - | 1.0 ± 0.0 |" in md
    assert "CPU time = user + system seconds" in md
    rows = json.loads((out / "compare.json").read_text())
    assert [r["cpu_seconds"] for r in rows[0]["runs"]] == [130.0, 140.0]
    assert rows[0]["cpu_seconds_std"] == pytest.approx(math.sqrt(50.0))
    # the trade-off plot: a point for ptft at (135 s, test WER 3.0); none for "old" (a run lacks CPU time)
    points = compare_systems.wer_vs_cpu_points(rows, "test")
    assert [p["label"] for p in points] == ["ptft"]
    assert points[0]["cpu"] == pytest.approx(135.0) and points[0]["cpu_err"] == pytest.approx(math.sqrt(50.0))
    assert points[0]["wer"] == pytest.approx(3.0) and points[0]["wer_err"] == pytest.approx(0.0)
    assert (out / "wer_vs_cpu_time.png").read_bytes()[:4] == b"\x89PNG"
    assert "wer_vs_cpu_time.png" in md
    # one run per system: the single-run table has the column too
    rc, out = compare(tmp_path, "--system", f"a={ft[0]}", "--pre_exp", f"a={pt[0]}")
    assert rc == 0
    assert "| a | 0.1 k | 150 | 130 | 1.0 | 2.0 | 3.0 | 4.0 |" in (out / "compare.md").read_text()


def test_argument_errors(tmp_path, capsys):
    a = fake_run(tmp_path, "a", 10, {"dev": {"wer": 1.0, "cer": 2.0}, "test": {"wer": 3.0, "cer": 4.0}})
    rc, _ = compare(tmp_path, "--system", f"a={a},{a}", "--pre_exp", f"a={a}")
    assert rc == 1 and "--pre_exp a: 1 dir(s) for 2 run(s) of --system a" in capsys.readouterr().err
    rc, _ = compare(tmp_path, "--system", f"a={a}", "--pre_exp", f"b={a}")
    assert rc == 1 and "--pre_exp b: no --system b" in capsys.readouterr().err
    rc, _ = compare(tmp_path, "--system", f"a={a}", "--system", f"a={a}")
    assert rc == 1 and "given twice" in capsys.readouterr().err
    rc, _ = compare(tmp_path, "--system", f"a={a},{tmp_path / 'nope'}")
    assert rc == 1 and "nope: experiment dir not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare(tmp_path, "--system", f"a={a},")
    assert "expected NAME=DIR[,DIR...]" in capsys.readouterr().err


def _seeded(exp: Path, seed: int) -> Path:
    (exp / "config.yaml").write_text(f"seed: {seed}\nsolver: supervised\n")
    return exp


def test_systems_trained_on_the_same_seeds_are_paired_by_seed(tmp_path):
    from scipy.stats import ttest_rel

    sup_wer = {1: 70.0, 2: 74.0, 3: 72.0}
    bl_wer = {1: 66.0, 2: 75.0, 3: 65.0}  # better on seeds 1 and 3
    sup = [_seeded(fake_run(tmp_path, f"sup_seed{k}", 40, {"dev": {"wer": sup_wer[k], "cer": 20.0},
                                                            "test": {"wer": 50.0, "cer": 20.0}}), k)
           for k in (1, 2, 3)]
    # given in another order: the pairing follows config.yaml's seed, not the position
    bl = [_seeded(fake_run(tmp_path, f"bl_seed{k}", 40, {"dev": {"wer": bl_wer[k], "cer": 20.0},
                                                          "test": {"wer": 50.0 + k, "cer": 20.0}}), k)
          for k in (3, 1, 2)]
    rc, out = compare(tmp_path, "--system", "supervised=" + ",".join(map(str, sup)),
                      "--system", "bljust=" + ",".join(map(str, bl)))
    assert rc == 0
    paired = json.loads((out / "paired.json").read_text())
    assert paired["unpaired"] == []
    (entry,) = paired["pairs"]
    assert (entry["a"], entry["b"], entry["seeds"]) == ("supervised", "bljust", [1, 2, 3])
    dev = entry["wer"]["dev"]
    assert dev["diffs"] == [-4.0, 1.0, -7.0] and dev["b_better"] == 2
    assert dev["mean"] == pytest.approx(-10 / 3)
    assert dev["p"] == pytest.approx(ttest_rel([66.0, 75.0, 65.0], [70.0, 74.0, 72.0]).pvalue)
    assert entry["wer"]["test"]["diffs"] == [1.0, 2.0, 3.0] and entry["wer"]["test"]["b_better"] == 0
    md = (out / "compare.md").read_text()
    assert "## Paired by seed" in md
    row = next(line for line in md.splitlines() if line.startswith("| bljust vs supervised |"))
    assert row.startswith("| bljust vs supervised | 1, 2, 3 | -3.3 ± 4.0 (2/3, p ")
    assert "| 2.0 ± 1.0 (0/3, p " in row


def test_different_seeds_are_not_paired_and_unknown_seeds_give_no_table(tmp_path):
    errs = {"dev": {"wer": 60.0, "cer": 20.0}, "test": {"wer": 60.0, "cer": 20.0}}
    a = [_seeded(fake_run(tmp_path, f"a{k}", 40, errs), k) for k in (1, 2)]
    b = [_seeded(fake_run(tmp_path, f"b{k}", 40, errs), k) for k in (1, 3)]
    rc, out = compare(tmp_path, "--system", "a=" + ",".join(map(str, a)), "--system", "b=" + ",".join(map(str, b)))
    assert rc == 0
    md = (out / "compare.md").read_text()
    assert "Not paired: a / b: seeds [1, 2] vs [1, 3]." in md and "| b vs a |" not in md
    # exp dirs without config.yaml (seed unknown): the table of means only
    c = [fake_run(tmp_path / "x", f"c{k}", 40, errs) for k in (1, 2)]
    d = [fake_run(tmp_path / "x", f"d{k}", 40, errs) for k in (1, 2)]
    rc, out = compare(tmp_path / "x", "--system", "c=" + ",".join(map(str, c)), "--system", "d=" + ",".join(map(str, d)))
    assert rc == 0 and "Paired by seed" not in (out / "compare.md").read_text()


def test_results_file_holds_command_tables_and_its_own_copy_of_the_plots(tmp_path):
    errs = {"dev": {"wer": 60.0, "cer": 20.0}, "test": {"wer": 61.0, "cer": 21.0}}
    a = [_seeded(fake_run(tmp_path, f"a{k}", 40, errs), k) for k in (1, 2)]
    b = [_seeded(fake_run(tmp_path, f"b{k}", 40, errs), k) for k in (1, 2)]
    results = tmp_path / "recipe" / "RESULTS_a_b.md"
    args = ["--system", "a=" + ",".join(map(str, a)), "--system", "b=" + ",".join(map(str, b)),
            "--results_file", str(results)]
    rc, out = compare(tmp_path, *args)
    assert rc == 0
    text = results.read_text()
    assert text.startswith("<!-- Generated by espnet_bilevel.bin.compare_systems")
    # the command reproduces the file: every argument, shell-quoted
    command = next(line for line in text.splitlines() if line.startswith("python -m espnet_bilevel.bin.compare_systems"))
    assert f"--results_file {results}" in command and f"--out_dir {out}" in command and "--test_sets dev test" in command
    # the same tables as compare.md, and links to plots next to the results file (exp/ is not versioned)
    table = (out / "compare.md").read_text().split("\nPlots:")[0]
    assert table.strip() in text and "## Paired by seed" in text
    figures = tmp_path / "recipe" / "RESULTS_a_b_figures"
    assert "![wer_by_system](RESULTS_a_b_figures/wer_by_system.png)" in text
    assert (figures / "wer_by_system.png").read_bytes() == (out / "wer_by_system.png").read_bytes()
    assert (figures / "dev_cer_vs_wall_time.png").is_file()
    assert not list((tmp_path / "recipe").glob("*.tmp"))
    # a failing comparison leaves the previous file and plots as they were
    rc, _ = compare(tmp_path, "--system", "a=" + str(tmp_path / "missing"), "--results_file", str(results))
    assert rc == 1 and results.read_text() == text and (figures / "wer_by_system.png").is_file()


def test_results_file_must_be_markdown(tmp_path, capsys):
    with pytest.raises(SystemExit):
        compare(tmp_path, "--system", "a=" + str(tmp_path), "--results_file", str(tmp_path / "R.txt"))
    err = capsys.readouterr().err
    assert "--results_file" in err and "must end in .md" in err
    assert not (tmp_path / "compare").exists()
