#!/usr/bin/env python3
"""Compare trained systems: one markdown table (WER/CER, wall and CPU time, parameters) and PNG plots.

Usage (bilevel_asr.sh stage 16):
  python -m espnet_bilevel.bin.compare_systems \\
      --system supervised=exp/asr_supervised_raw_char --system ptft=exp/asr_ptft_raw_char \\
      --pre_exp ptft=exp/asr_pt_raw_char --system bljust=exp/asr_bljust_raw_char \\
      --decode_dir decode_decode_ctc_greedy_valid.cer_ctc.ave --test_sets dev test \\
      --valid_set dev --out_dir exp/compare_raw_char

  # several runs (seeds) per system: comma-separated dirs; --pre_exp lists as many dirs, in order
  python -m espnet_bilevel.bin.compare_systems \\
      --system supervised=exp/asr_supervised_raw_char_seed1,exp/asr_supervised_raw_char_seed2 \\
      --system ptft=exp/asr_ptft_raw_char_seed1,exp/asr_ptft_raw_char_seed2 \\
      --pre_exp ptft=exp/asr_pt_raw_char_seed1,exp/asr_pt_raw_char_seed2 ... (as above)

Reads, per system exp dir E:
  E/<decode_dir>/<set>/scoring/result.json   WER/CER (stage 13)
  E/train_wall_seconds                     training wall time measured by the recipe (stage 11)
  E/train_cpu_seconds (optional)           its CPU time (user + system); the table gets a CPU column
                                           when any run has one
  E/export/model.pth (else E/<N>epoch.pth) parameter count
  E/checkpoint.pth (reporter) or E/train.log   per-epoch validation cer_ctc and epoch times
  E/steps/epoch*.jsonl                     per-step losses and gamma (BL-JUST plot)
``--pre_exp NAME=DIR`` adds a preceding run (the PT half of PT+FT): its wall and CPU times are added and its
epochs come first on the time axis.

With one dir per system the table has one row of numbers per system. As soon as one system has
several dirs (runs with different seeds), every cell is ``mean ± std`` over that system's runs
(sample standard deviation, n - 1 in the denominator; a "runs" column gives n; a value missing in
any run makes the cell "-"), and the plot shows the per-epoch mean with error bars (one standard
deviation of time and CER; epochs that not every run has are dropped). A row of compare.json then
holds n, the means (wall_seconds, cpu_seconds, scores, curve = [time, CER, time std, CER std] per
epoch), their standard deviations (wall_seconds_std, cpu_seconds_std, scores_std) and the single-run
rows under "runs". Exp dir
paths must not contain commas.

Paired by seed: when two systems have runs with the same seeds (``seed`` in each run's config.yaml, as
the recipe's --seeds trains them), compare.md gets a second table with, for every such pair A before B
(in --system order) and every set, the per-seed difference WER(B) - WER(A): mean ± sample std, the
number of seeds on which B is better, and the two-sided paired t-test p-value (n - 1 degrees of
freedom). With the seed-to-seed spread of a small corpus, the per-seed pairing is what tells a real
difference of the means from chance. paired.json holds the same numbers.

Writes <out_dir>/compare.md, compare.json, paired.json (runs with several seeds), wer_by_system.png (bars per set, error bars = std over
runs), wer_vs_cpu_time.png (last test set's WER against training CPU time, one point per system that
has train_cpu_seconds), dev_cer_vs_wall_time.png and, for each BL-JUST system (solver bljust in its config.yaml) with
steps/*.jsonl, <name>_losses.png. Exit status 1 with "ERROR: ..." on missing inputs.

``--results_file RESULTS_x.md`` also writes a results file to keep under version control (a comparison
of runs that no single recipe call trained, e.g. two tags side by side): the command that made it, the
tables, and the plots copied to RESULTS_x_figures/ next to it, so that a README quotes generated numbers
instead of hand copies:
  python -m espnet_bilevel.bin.compare_systems --system a=exp/asr_a_seed1,exp/asr_a_seed2 \
      --system b=exp/asr_b_seed1,exp/asr_b_seed2 --decode_dir decode_decode_ctc_greedy_valid.cer_ctc.ave \
      --test_sets dev test --out_dir exp/compare_a_b --results_file RESULTS_a_b.md
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import re
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml

from espnet_bilevel.data import markdown_table


class CompareError(Exception):
    pass


def name_and_dirs(value: str) -> Tuple[str, List[Path]]:
    """NAME=DIR[,DIR...] -> (NAME, [DIR, ...])."""
    name, _, paths = value.partition("=")
    parts = paths.split(",")
    if not name or not paths or "" in parts:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR[,DIR...], got {value!r}")
    return name, [Path(p) for p in parts]


def mean_std(values: List[Optional[float]]) -> Tuple[Optional[float], Optional[float]]:
    """Mean and sample standard deviation (n - 1); (None, None) if a value is missing or NaN,
    std None for a single value."""
    if not values or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return None, None
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


# ------------------------------------------------------------------------------------ readers


def read_scores(exp: Path, decode_dir: str, sets: List[str]) -> Dict[str, Dict[str, float]]:
    out = {}
    for s in sets:
        p = exp / decode_dir / s / "scoring" / "result.json"
        if not p.is_file():
            raise CompareError(f"{p}: not found (run stage 13 scoring first)")
        r = json.loads(p.read_text(encoding="utf-8"))
        out[s] = {}
        for metric in ("wer", "cer"):
            entry = r.get(metric) or {}
            v = entry.get("sclite") or entry.get("python") or {}
            out[s][metric] = v.get("err")
    return out


@functools.lru_cache(maxsize=None)
def read_config(exp: Path) -> dict:
    """exp/config.yaml as a dict ({} if the dir has none); parsed once per run (seed and solver both
    come from it). Callers must not modify the dict."""
    p = exp / "config.yaml"
    if not p.is_file():
        return {}
    try:
        conf = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise CompareError(f"{p}: not valid YAML ({e})")
    return conf if isinstance(conf, dict) else {}


def solver_of(exp: Path) -> Optional[str]:
    """The espnet_bilevel solver of a run (``solver`` in exp/config.yaml); None for a stock ESPnet run
    or a dir without config.yaml."""
    return read_config(exp).get("solver")


def seed_of(exp: Path) -> Optional[int]:
    """The training seed of a run (``seed`` in exp/config.yaml, stock ESPnet and ours); None if unknown."""
    seed = read_config(exp).get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def bilevel_systems(systems: Dict[str, list]) -> List[str]:
    """The BL-JUST systems among the compared ones (their first run was trained with solver bljust,
    whatever the system is called): each gets a plot of its f, g and gamma per step."""
    return [n for n, dirs in systems.items() if solver_of(dirs[0]) == "bljust"]


def read_seconds(exp: Path, name: str) -> Optional[float]:
    """The number of seconds in exp/<name> (stage 11 writes train_wall_seconds and train_cpu_seconds),
    None if the file is absent or holds no number."""
    p = exp / name
    if p.is_file():
        try:
            return float(p.read_text().split()[0])
        except (ValueError, IndexError):
            return None
    return None


def read_seconds_with_pre(exp: Path, pre: Optional[Path], name: str) -> Optional[float]:
    """read_seconds of a run plus that of its preceding run (the PT half of PT+FT, if any); None if
    either is unknown."""
    seconds = read_seconds(exp, name)
    if pre is not None:
        pre_seconds = read_seconds(pre, name)
        seconds = None if seconds is None or pre_seconds is None else seconds + pre_seconds
    return seconds


def count_params(exp: Path) -> Optional[int]:
    import torch

    candidates = [exp / "export" / "model.pth"] + sorted(exp.glob("*epoch.pth"))
    for p in candidates:
        if p.is_file():
            state = torch.load(p, map_location="cpu", weights_only=False)
            if isinstance(state, dict) and "model" in state and "optimizers" in state:
                state = state["model"]
            return int(sum(v.numel() for v in state.values() if hasattr(v, "numel")))
    return None


_LOG_EPOCH = re.compile(r"(\d+)epoch results: (.*)$")


def _seconds(value) -> float:
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    return float(value)


def read_epochs(exp: Path) -> List[Dict[str, float]]:
    """[{epoch, seconds, cer_ctc}] from checkpoint.pth's reporter (fallback: train.log)."""
    ckpt = exp / "checkpoint.pth"
    rows: List[Dict[str, float]] = []
    if ckpt.is_file():
        import torch

        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        stats = (state.get("reporter") or {}).get("stats", {})
        for epoch in sorted(stats):
            e = stats[epoch]
            seconds = sum(_seconds(e[m]["time"]) for m in ("train", "valid") if m in e and "time" in e[m])
            cer = e.get("valid", {}).get("cer_ctc")
            rows.append({"epoch": int(epoch), "seconds": seconds,
                         "cer_ctc": float(cer) if cer is not None else math.nan})
        return rows
    log = exp / "train.log"
    if log.is_file():
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            m = _LOG_EPOCH.search(line)
            if not m:
                continue
            seconds = sum(float(t) for t in re.findall(r"time=([0-9.]+) seconds", m.group(2)))
            cer = re.search(r"\[valid\].*?cer_ctc=([0-9.]+)", m.group(2))
            rows.append({"epoch": int(m.group(1)), "seconds": seconds,
                         "cer_ctc": float(cer.group(1)) if cer else math.nan})
    return rows


def read_steps(exp: Path) -> List[dict]:
    files = sorted((exp / "steps").glob("epoch*.jsonl"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    rows = []
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
    return rows


# ------------------------------------------------------------------------------------ outputs


def _fmt(x, digits=1):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def _fmt_params(n: Optional[int]) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


CPU_NOTE = ("CPU time = user + system seconds of the training processes: unlike wall time it "
            "hardly grows when other jobs share the cores.")


def _has_cpu(rows: List[dict]) -> bool:
    return any(r.get("cpu_seconds") is not None for r in rows)


def markdown(rows: List[dict], sets: List[str]) -> str:
    cpu = _has_cpu(rows)
    head = ["system", "params", "train wall time (s)"] + (["train CPU time (s)"] if cpu else [])
    for s in sets:
        head += [f"{s} WER (%)", f"{s} CER (%)"]
    lines = ["## Comparison of systems", "",
             "Same data, model and decoding for every system; WER/CER in %, wall time of stage 11 "
             "(for the PT+FT systems: pre-training + fine-tuning)." + (" " + CPU_NOTE if cpu else ""), "",
             *markdown_table.header(head)]
    for r in rows:
        cells = [r["system"], _fmt_params(r["params"]), _fmt(r["wall_seconds"], 0)]
        if cpu:
            cells.append(_fmt(r.get("cpu_seconds"), 0))
        for s in sets:
            cells += [_fmt(r["scores"][s]["wer"]), _fmt(r["scores"][s]["cer"])]
        lines.append(markdown_table.row(cells))
    return "\n".join(lines) + "\n"


def fmt_mean_std(mean, std, digits=1) -> str:
    if mean is None:
        return "-"
    return _fmt(mean, digits) if std is None else f"{_fmt(mean, digits)} ± {_fmt(std, digits)}"


def markdown_runs(rows: List[dict], sets: List[str]) -> str:
    """The table for several runs per system: mean ± sample std over the runs."""
    cpu = _has_cpu(rows)
    head = ["system", "runs", "params", "train wall time (s)"] + (["train CPU time (s)"] if cpu else [])
    for s in sets:
        head += [f"{s} WER (%)", f"{s} CER (%)"]
    lines = ["## Comparison of systems", "",
             "Same data, model and decoding for every system; WER/CER in %, wall time of stage 11 "
             "(for the PT+FT systems: pre-training + fine-tuning). Each cell is mean ± sample standard deviation "
             "over the system's runs (seeds); n = runs." + (" " + CPU_NOTE if cpu else ""), "",
             *markdown_table.header(head)]
    for r in rows:
        cells = [r["system"], str(r["n"]), _fmt_params(r["params"]),
                 fmt_mean_std(r["wall_seconds"], r["wall_seconds_std"], 0)]
        if cpu:
            cells.append(fmt_mean_std(r.get("cpu_seconds"), r.get("cpu_seconds_std"), 0))
        for s in sets:
            for m in ("wer", "cer"):
                cells.append(fmt_mean_std(r["scores"][s][m], r["scores_std"][s][m]))
        lines.append(markdown_table.row(cells))
    return "\n".join(lines) + "\n"


def mean_curve(curves: List[List[Tuple[float, float]]]) -> List[List[Optional[float]]]:
    """Per epoch [mean time, mean CER, std time, std CER] over runs (epochs all runs have)."""
    out = []
    for i in range(min(len(c) for c in curves) if curves else 0):
        t, t_std = mean_std([c[i][0] for c in curves])
        cer, cer_std = mean_std([c[i][1] for c in curves])
        out.append([t, math.nan if cer is None else cer, t_std, cer_std])
    return out


def plot_cer_vs_time(curves: Dict[str, List[Tuple[float, float]]], out: Path, valid_set: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in curves.items():
        pts = [(t, c) for t, c in pts if not math.isnan(c)]
        if pts:
            ax.plot([t for t, _ in pts], [100 * c for _, c in pts], marker="o", label=name)
    _finish_cer_plot(fig, ax, out, valid_set)


def plot_cer_vs_time_runs(curves: Dict[str, List[List[Optional[float]]]], out: Path, valid_set: str) -> None:
    """The mean curve of each system with error bars (one std of time and of CER)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in curves.items():
        pts = [p for p in pts if p[0] is not None and not math.isnan(p[1])]
        if pts:
            ax.errorbar([p[0] for p in pts], [100 * p[1] for p in pts],
                        xerr=[p[2] or 0.0 for p in pts], yerr=[100 * (p[3] or 0.0) for p in pts],
                        marker="o", capsize=3, label=name)
    _finish_cer_plot(fig, ax, out, valid_set, " (mean ± std over runs)")


def _finish_cer_plot(fig, ax, out: Path, valid_set: str, title_suffix: str = "") -> None:
    import matplotlib.pyplot as plt

    ax.set_xlabel("training time (s, trainer epochs)")
    ax.set_ylabel(f"{valid_set} CER (%, CTC greedy)")
    ax.set_title("Validation CER vs. training time" + title_suffix)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def wer_bars(rows: List[dict], sets: List[str]) -> List[dict]:
    """What wer_by_system.png draws, per system: label, WER per set (mean), error (sample std, 0
    for one run) and the single runs' WERs (dots)."""
    bars = []
    for r in rows:
        std = r.get("scores_std") or {}
        bars.append({
            "label": r["system"] + (f" (n={r['n']})" if "n" in r else ""),
            "wer": [r["scores"][s]["wer"] for s in sets],
            "err": [(std.get(s) or {}).get("wer") or 0.0 for s in sets],
            "runs": [[run["scores"][s]["wer"] for run in r.get("runs", []) if run["scores"][s]["wer"] is not None]
                     for s in sets],
        })
    return bars


def plot_wer_by_system(rows: List[dict], sets: List[str], out: Path) -> None:
    """Grouped bars: one group per evaluation set, one bar per system; with several runs the bar is
    the mean, the error bar one sample standard deviation and each run a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = wer_bars(rows, sets)
    width = 0.8 / max(len(bars), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 + 0.6 * len(sets) * len(bars)), 4))
    for i, b in enumerate(bars):
        xs = [j + (i - (len(bars) - 1) / 2) * width for j in range(len(sets))]
        ax.bar(xs, [math.nan if w is None else w for w in b["wer"]], width, yerr=b["err"], capsize=3,
               label=b["label"])
        for x, pts in zip(xs, b["runs"]):
            ax.plot([x] * len(pts), pts, "k.", ms=4)
    ax.set_xticks(range(len(sets)))
    ax.set_xticklabels(sets)
    ax.set_ylabel("WER (%)")
    several = any(b["runs"][0] for b in bars)
    ax.set_title("WER by system" + (" (mean ± std over runs; dots: runs)" if several else ""))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def wer_vs_cpu_points(rows: List[dict], set_name: str) -> List[dict]:
    """What wer_vs_cpu_time.png draws: one point per system whose training CPU time is known, at
    (CPU seconds, WER on ``set_name``), with one sample std either way (0 for a single run)."""
    points = []
    for r in rows:
        wer = (r["scores"].get(set_name) or {}).get("wer")
        if r.get("cpu_seconds") is None or wer is None:
            continue
        points.append({
            "label": r["system"], "cpu": r["cpu_seconds"], "cpu_err": r.get("cpu_seconds_std") or 0.0,
            "wer": wer, "wer_err": ((r.get("scores_std") or {}).get(set_name) or {}).get("wer") or 0.0,
        })
    return points


def plot_wer_vs_cpu_time(points: List[dict], set_name: str, out: Path) -> None:
    """The cost/accuracy trade-off: WER on ``set_name`` against training CPU time, one point per
    system (``wer_vs_cpu_points``; the question of issue #4: is BL-JUST better *for its training
    time*?)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for pt in points:
        ax.errorbar(pt["cpu"], pt["wer"], xerr=pt["cpu_err"], yerr=pt["wer_err"], fmt="o", capsize=3,
                    label=pt["label"])
    ax.set_xlabel("training CPU time (s)")
    ax.set_ylabel(f"{set_name} WER (%)")
    ax.set_title(f"{set_name} WER against training cost (mean ± std over runs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_bljust(steps: List[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = list(range(1, len(steps) + 1))

    def series(key):
        return [(i, r[key]) for i, r in zip(x, steps) if r.get(key) is not None]

    upper = series("loss_sup") or series("loss_ctc")
    panels = [("upper loss f (supervised)", upper), ("lower loss g (SSL)", series("loss_ssl")),
              ("penalty gamma", series("gamma"))]
    fig, axes = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
    colors = {"lower": "tab:blue", "joint": "tab:purple", "upper": "tab:red"}
    for ax, (title, pts) in zip(axes, panels):
        by_phase: Dict[str, List[Tuple[int, float]]] = {}
        for i, v in pts:
            by_phase.setdefault(steps[i - 1].get("phase", "?"), []).append((i, v))
        for phase, p in by_phase.items():
            ax.plot([a for a, _ in p], [b for _, b in p], ".", ms=3, color=colors.get(phase), label=phase)
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[-1].legend(title="phase", fontsize=8)
    axes[-1].set_xlabel("training step")
    fig.suptitle("BL-JUST: upper loss f, lower loss g and gamma over steps")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def read_run(exp: Path, pre: Optional[Path], decode_dir: str, sets: List[str]) -> dict:
    """One run of a system: wall and CPU time (+ the preceding run's), scores, params and CER curve."""
    if not exp.is_dir():
        raise CompareError(f"{exp}: experiment dir not found")
    wall = read_seconds_with_pre(exp, pre, "train_wall_seconds")
    cpu = read_seconds_with_pre(exp, pre, "train_cpu_seconds")
    offset = 0.0
    if pre is not None:
        for e in read_epochs(pre):
            offset += e["seconds"]
    points: List[Tuple[float, float]] = []
    t = offset
    for e in read_epochs(exp):
        t += e["seconds"]
        points.append((t, e["cer_ctc"]))
    return {"exp": str(exp), "seed": seed_of(exp), "params": count_params(exp), "wall_seconds": wall,
            "cpu_seconds": cpu, "scores": read_scores(exp, decode_dir, sets), "curve": points}


def paired_t_p(diffs: List[float]) -> Optional[float]:
    """Two-sided p-value of the paired t-test of the mean difference against 0 (None for n < 2 or no spread)."""
    mean, std = mean_std(diffs)
    if mean is None or std is None or std == 0:
        return None
    from scipy.stats import t as student_t  # lazy: only comparisons over seeds need it

    t = mean / (std / math.sqrt(len(diffs)))
    return float(2 * student_t.sf(abs(t), len(diffs) - 1))


def paired_by_seed(rows: List[dict], sets: List[str]) -> Tuple[List[dict], List[str]]:
    """WER(B) - WER(A) per seed for every pair of systems (A before B) trained on the same seeds.
    Returns the pairs and the pairs that cannot be paired (as "A / B: reason")."""
    pairs, unpaired = [], []
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            seeds_a = [r.get("seed") for r in a.get("runs", [])]
            seeds_b = [r.get("seed") for r in b.get("runs", [])]
            if len(seeds_a) < 2 or len(seeds_b) < 2:
                continue
            if None in seeds_a or None in seeds_b:
                continue  # runs without a config.yaml seed (not from the recipe): nothing to pair by
            if len(set(seeds_a)) < len(seeds_a) or len(set(seeds_b)) < len(seeds_b):
                unpaired.append(f"{a['system']} / {b['system']}: a seed is repeated")
                continue
            if set(seeds_a) != set(seeds_b):
                unpaired.append(f"{a['system']} / {b['system']}: seeds {sorted(seeds_a)} vs {sorted(seeds_b)}")
                continue
            run_a = {r["seed"]: r for r in a["runs"]}
            run_b = {r["seed"]: r for r in b["runs"]}
            seeds = sorted(run_a)
            entry = {"a": a["system"], "b": b["system"], "seeds": seeds, "wer": {}}
            for s in sets:
                vals = [(run_a[k]["scores"][s]["wer"], run_b[k]["scores"][s]["wer"]) for k in seeds]
                if any(x is None or y is None or math.isnan(x) or math.isnan(y) for x, y in vals):
                    entry["wer"][s] = None
                    continue
                diffs = [y - x for x, y in vals]
                mean, std = mean_std(diffs)
                entry["wer"][s] = {"diffs": diffs, "mean": mean, "std": std,
                                   "b_better": sum(d < 0 for d in diffs), "p": paired_t_p(diffs)}
            pairs.append(entry)
    return pairs, unpaired


def markdown_paired(pairs: List[dict], unpaired: List[str], sets: List[str]) -> str:
    """The paired-by-seed table (empty string if nothing could be paired)."""
    if not pairs and not unpaired:
        return ""
    head = ["B vs A", "seeds"] + [f"{s}: WER(B) - WER(A)" for s in sets]
    lines = ["## Paired by seed", "", PAIRED_EXPLAINED, "",
             *markdown_table.header(head)]
    lines += [markdown_table.row(paired_cells(e, sets)) for e in pairs]
    if unpaired:
        lines += ["", "Not paired: " + "; ".join(unpaired) + "."]
    return "\n".join(lines) + "\n"


PAIRED_EXPLAINED = (
    "Per seed, WER(B) - WER(A) in % points: mean ± sample std over the seeds (negative: B is "
    "better), in brackets the seeds on which B is better and the two-sided paired t-test p-value "
    "(n - 1 degrees of freedom; p < 0.05 needs a difference that is large against its "
    "seed-to-seed spread).")


def paired_cells(e: dict, sets: List[str]) -> List[str]:
    """One row of a paired-by-seed table: "B vs A", the seeds, and per set the difference cell."""
    cells = [f"{e['b']} vs {e['a']}", ", ".join(map(str, e["seeds"]))]
    for s in sets:
        w = e["wer"][s]
        if w is None:
            cells.append("-")
            continue
        p = "-" if w["p"] is None else (f"{w['p']:.3f}" if w["p"] >= 0.001 else "< 0.001")
        cells.append(f"{fmt_mean_std(w['mean'], w['std'])} ({w['b_better']}/{len(w['diffs'])}, p {p})")
    return cells


def aggregate(name: str, runs: List[dict], sets: List[str]) -> dict:
    """The row of a system with several runs: mean and sample std of every number."""
    wall, wall_std = mean_std([r["wall_seconds"] for r in runs])
    cpu, cpu_std = mean_std([r["cpu_seconds"] for r in runs])
    scores: Dict[str, Dict[str, Optional[float]]] = {}
    scores_std: Dict[str, Dict[str, Optional[float]]] = {}
    for s in sets:
        scores[s], scores_std[s] = {}, {}
        for m in ("wer", "cer"):
            scores[s][m], scores_std[s][m] = mean_std([r["scores"][s][m] for r in runs])
    return {"system": name, "exp": [r["exp"] for r in runs], "n": len(runs), "params": runs[0]["params"],
            "wall_seconds": wall, "wall_seconds_std": wall_std, "cpu_seconds": cpu, "cpu_seconds_std": cpu_std,
            "scores": scores, "scores_std": scores_std,
            "curve": mean_curve([r["curve"] for r in runs]), "runs": runs}


def figures_dir_of(results_file: Path) -> Path:
    """Where a results file's plots go: RESULTS_x.md -> RESULTS_x_figures/ (as the recipe's stage 16)."""
    return results_file.with_name(results_file.stem + "_figures")


def write_results_file(results_file: Path, argv: List[str], out_dir: Path, table: str, plots: List[str]) -> None:
    """A generated, self-contained results file: command, tables, plots (copied next to it).

    Written through temporaries and renamed, so that a failed run leaves the previous file intact."""
    results_file.parent.mkdir(parents=True, exist_ok=True)
    figures = figures_dir_of(results_file)
    tmp_figures = figures.with_name(figures.name + ".tmp")
    if tmp_figures.exists():
        shutil.rmtree(tmp_figures)
    tmp_figures.mkdir()
    links = []
    for name in plots:
        src = out_dir / f"{name}.png"
        if src.is_file():
            shutil.copyfile(src, tmp_figures / src.name)
            links.append(f"![{name}]({figures.name}/{src.name})\n")
    command = "python -m espnet_bilevel.bin.compare_systems " + shlex.join(argv)
    cwd = Path.cwd()
    repo = Path(__file__).resolve().parents[2]
    if cwd.resolve().is_relative_to(repo):  # a recipe dir of this checkout: say which, not where it is on disk
        cwd = cwd.resolve().relative_to(repo)
    text = "\n".join([
        "<!-- Generated by espnet_bilevel.bin.compare_systems --results_file; do not edit by hand. -->",
        f"# Comparison: {results_file.stem}", "",
        f"Command (run from `{cwd}`, after `. ./path.sh` in a recipe dir):", "",
        "```bash", command, "```", "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; tables and plots also in `{out_dir}`", "",
        table, *links])
    tmp_md = results_file.with_name(results_file.name + ".tmp")
    tmp_md.write_text(text, encoding="utf-8")
    if figures.exists():
        shutil.rmtree(figures)
    tmp_figures.rename(figures)
    tmp_md.rename(results_file)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--system", type=name_and_dirs, action="append", required=True,
                   help="NAME=EXP_DIR[,EXP_DIR...] (repeatable; several dirs = runs with different seeds)")
    p.add_argument("--pre_exp", type=name_and_dirs, action="append", default=[],
                   help="NAME=EXP_DIR[,EXP_DIR...] of the preceding runs, one per run of NAME, in order")
    p.add_argument("--decode_dir", required=True, help="decode dir name inside each exp dir")
    p.add_argument("--test_sets", nargs="+", required=True)
    p.add_argument("--valid_set", default="dev", help="name used on the CER plot's axis")
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--results_file", type=Path, default=None,
                   help="also write this markdown file (command, tables) with the plots in <stem>_figures/ next to it")
    argv = sys.argv[1:] if argv is None else list(argv)
    a = p.parse_args(argv)
    if a.results_file is not None and a.results_file.suffix != ".md":
        p.error(f"--results_file {a.results_file}: must end in .md (its plots go to <stem>_figures/)")
    systems = dict(a.system)
    pre = dict(a.pre_exp)
    several = any(len(dirs) > 1 for dirs in systems.values())
    try:
        if len(systems) != len(a.system):
            raise CompareError("--system: a system name is given twice")
        for name, dirs in pre.items():
            if name not in systems:
                raise CompareError(f"--pre_exp {name}: no --system {name}")
            if len(dirs) != len(systems[name]):
                raise CompareError(f"--pre_exp {name}: {len(dirs)} dir(s) for {len(systems[name])} run(s) "
                                   f"of --system {name}")
        rows = []
        for name, dirs in a.system:
            pre_dirs = pre.get(name, [None] * len(dirs))
            runs = [read_run(exp, pre_exp, a.decode_dir, a.test_sets) for exp, pre_exp in zip(dirs, pre_dirs)]
            if several:
                rows.append(aggregate(name, runs, a.test_sets))
            else:
                rows.append({"system": name, **runs[0]})
        bilevel = bilevel_systems(systems)
    except CompareError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    table = markdown_runs(rows, a.test_sets) if several else markdown(rows, a.test_sets)
    pairs, unpaired = paired_by_seed(rows, a.test_sets) if several else ([], [])
    paired_md = markdown_paired(pairs, unpaired, a.test_sets)
    if paired_md:
        table += "\n" + paired_md
    tmp = a.out_dir.with_name(a.out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    cpu_points = wer_vs_cpu_points(rows, a.test_sets[-1])  # none: no run recorded its CPU time
    (tmp / "compare.md").write_text(table + "\n"
                                    + f"Plots: `{a.out_dir}/wer_by_system.png`, "
                                    + (f"`{a.out_dir}/wer_vs_cpu_time.png`, " if cpu_points else "")
                                    + f"`{a.out_dir}/dev_cer_vs_wall_time.png`"
                                    + "".join(f", `{a.out_dir}/{n}_losses.png`" for n in bilevel)
                                    + "\n", encoding="utf-8")
    (tmp / "compare.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    if several:
        (tmp / "paired.json").write_text(json.dumps({"pairs": pairs, "unpaired": unpaired}, indent=2),
                                         encoding="utf-8")
    curves = {r["system"]: r["curve"] for r in rows}
    if several:
        plot_cer_vs_time_runs(curves, tmp / "dev_cer_vs_wall_time.png", a.valid_set)
    else:
        plot_cer_vs_time(curves, tmp / "dev_cer_vs_wall_time.png", a.valid_set)
    plot_wer_by_system(rows, a.test_sets, tmp / "wer_by_system.png")
    if cpu_points:
        plot_wer_vs_cpu_time(cpu_points, a.test_sets[-1], tmp / "wer_vs_cpu_time.png")
    for name in bilevel:
        bljust_exp = systems[name][0]  # with several runs: the first one's steps
        steps = read_steps(bljust_exp)
        if steps:
            plot_bljust(steps, tmp / f"{name}_losses.png")
        else:
            print(f"WARNING: {bljust_exp}/steps/*.jsonl not found; no {name}_losses.png", file=sys.stderr)
    if a.out_dir.exists():
        shutil.rmtree(a.out_dir)
    tmp.rename(a.out_dir)
    if a.results_file is not None:
        plots = ["wer_by_system", "wer_vs_cpu_time", "dev_cer_vs_wall_time"] + [f"{n}_losses" for n in bilevel]
        write_results_file(a.results_file, argv, a.out_dir, table, plots)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
