#!/usr/bin/env python3
"""Label-budget curve: WER/CER against the number of labeled utterances, per system.

Usage (egs2/mini_synth/asr1/local/label_budget.sh, last stage):
  python -m espnet_bilevel.bin.label_budget_curve \\
      --point supervised:25=exp_budget/asr_supervised_raw_char_n25 \\
      --point bljust:25=exp_budget/asr_bljust_raw_char_n25 ... \\
      --point ptft:25=exp_budget/asr_ptft_raw_char_n25 --pre_point ptft:25=exp_budget/asr_pt_raw_char_n25 \\
      --decode_dir decode_decode_ctc_greedy_valid.cer_ctc.ave --test_sets dev test \\
      --plot_set test --out_dir exp_budget/label_budget

Each ``--point SYSTEM:N=DIR`` is one trained system at label budget N (DIR as in compare_systems:
DIR/<decode_dir>/<set>/scoring/result.json). Several DIRs (comma-separated, e.g. seeds) make the
cell a mean ± std. Writes <out_dir>/label_budget.md, label_budget.json and label_budget_wer.png
(WER on --plot_set against N, log-scale x axis, one line per system, error bars when several runs).
label_budget.md has, rows = budgets:
  * the --plot_set WER of every system (what the plot shows) and the number of runs per cell;
  * WER and CER of every system on every set;
  * training CPU time (DIR/train_cpu_seconds; with ``--pre_point SYSTEM:N=DIR[,DIR...]``, one preceding
    run per run, e.g. the PT half of PT+FT, its time is added);
  * with several seeded runs per cell (training seed from DIR/config.yaml), per budget and pair of
    systems the paired-by-seed difference WER(B) - WER(A), as compare_systems reports it: mean ±
    std, on how many seeds B is better, paired t-test p (also in label_budget_paired.json).
Exit 1 with "ERROR: ..." when a result file is missing or a --pre_point does not match its
--point (no such point, or another number of dirs).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_bilevel.bin.compare_systems import (PAIRED_EXPLAINED, CompareError, fmt_mean_std, mean_std,
                                                 paired_by_seed, paired_cells, read_scores,
                                                 read_seconds_with_pre, seed_of)
from espnet_bilevel.data import markdown_table


def _point(value: str) -> Tuple[str, int, List[Path]]:
    """SYSTEM:N=DIR[,DIR...] -> (SYSTEM, N, [DIR, ...])."""
    head, _, paths = value.partition("=")
    system, _, n = head.partition(":")
    parts = paths.split(",")
    if not system or not n.isdigit() or not paths or "" in parts:
        raise argparse.ArgumentTypeError(f"expected SYSTEM:N=DIR[,DIR...], got {value!r}")
    return system, int(n), [Path(p) for p in parts]


def collect(points, decode_dir: str, sets: List[str], pre_points=()) -> Tuple[Dict[str, Dict[int, dict]],
                                                                              Dict[int, list]]:
    """({system: {budget: {set: {metric: (mean, std, n_runs)}, "cpu_seconds": (mean, std, n_runs)}}},
    {budget: [compare_systems rows {"system", "runs": [{"seed", "scores"}]}]} for the paired tables).
    pre_points: (SYSTEM, N, [DIR, ...]) preceding runs, one per run of the point, whose CPU time is added."""
    pre_of = {(system, n): dirs for system, n, dirs in pre_points}
    known = {(system, n) for system, n, _ in points}
    for system, n, dirs in pre_points:
        if (system, n) not in known:
            raise CompareError(f"--pre_point {system}:{n} has no --point {system}:{n}")
    table: Dict[str, Dict[int, dict]] = {}
    rows: Dict[int, list] = {}
    for system, n, dirs in points:
        pres = pre_of.get((system, n), [None] * len(dirs))
        if len(pres) != len(dirs):
            raise CompareError(f"--pre_point {system}:{n} names {len(pres)} dirs for {len(dirs)} runs")
        runs = [read_scores(d, decode_dir, sets) for d in dirs]
        rows.setdefault(n, []).append(
            {"system": system, "runs": [{"seed": seed_of(d), "scores": r} for d, r in zip(dirs, runs)]})
        cell = {}
        for s in sets:
            cell[s] = {}
            for metric in ("wer", "cer"):
                m, sd = mean_std([r[s][metric] for r in runs])
                cell[s][metric] = (m, sd, len(runs))
        cpu = [read_seconds_with_pre(d, pre, "train_cpu_seconds") for d, pre in zip(dirs, pres)]
        cell["cpu_seconds"] = (*mean_std(cpu), len(runs))
        table.setdefault(system, {})[n] = cell
    return table, rows


def budgets_of(table) -> List[int]:
    """Every budget that some system has a point at, ascending (the rows of every table)."""
    return sorted({n for per in table.values() for n in per})


def paired_per_budget(rows: Dict[int, list], sets: List[str]) -> Dict[int, Tuple[List[dict], List[str]]]:
    """{budget: (pairs, unpaired)} for the budgets where some system has several seeded runs."""
    return {n: paired_by_seed(rows[n], sets) for n in sorted(rows)}


def markdown_plot_set(table, plot_set: str) -> str:
    """Rows = budgets, one column per system: the --plot_set WER (the plotted numbers) and the runs."""
    systems = list(table)
    budgets = budgets_of(table)
    head = ["labeled utts"] + [f"{sys_} {plot_set} WER" for sys_ in systems] + ["runs per cell"]
    lines = markdown_table.header(head)
    for n in budgets:
        cells = [table[sys_].get(n) for sys_ in systems]
        wer = [fmt_mean_std(*c[plot_set]["wer"][:2]) if c else "-" for c in cells]
        runs = sorted({c[plot_set]["wer"][2] for c in cells if c})
        lines.append(markdown_table.row([str(n)] + wer + ["/".join(map(str, runs))]))
    return "\n".join(lines) + "\n"


def markdown_cpu(table) -> str:
    """Rows = budgets, one column per system: training CPU time (s), mean ± std over the runs
    (empty string when no run has train_cpu_seconds)."""
    systems = list(table)
    budgets = budgets_of(table)
    if all(c["cpu_seconds"][0] is None for per in table.values() for c in per.values()):
        return ""
    head = ["labeled utts"] + [f"{sys_} train CPU (s)" for sys_ in systems]
    lines = markdown_table.header(head)
    for n in budgets:
        cells = [table[sys_].get(n) for sys_ in systems]
        cpu = [fmt_mean_std(*c["cpu_seconds"][:2], digits=0) if c else "-" for c in cells]
        lines.append(markdown_table.row([str(n)] + cpu))
    return "\n".join(lines) + "\n"


def markdown_paired_per_budget(paired: Dict[int, Tuple[List[dict], List[str]]], sets: List[str]) -> str:
    """The paired-by-seed table, a row per budget and pair of systems (empty string when nothing
    could be paired)."""
    if not any(p or u for p, u in paired.values()):
        return ""
    head = ["labeled utts", "B vs A", "seeds"] + [f"{s}: WER(B) - WER(A)" for s in sets]
    lines = ["Paired by seed, per budget. " + PAIRED_EXPLAINED, "",
             *markdown_table.header(head)]
    not_paired = []
    for n, (pairs, unpaired) in paired.items():
        lines += [markdown_table.row([str(n)] + paired_cells(e, sets)) for e in pairs]
        not_paired += [f"{n} utts: {u}" for u in unpaired]
    if not_paired:
        lines += ["", "Not paired: " + "; ".join(not_paired) + "."]
    return "\n".join(lines) + "\n"


def markdown(table, sets: List[str]) -> str:
    systems = list(table)
    budgets = budgets_of(table)
    head = ["labeled utts"] + [f"{sys} {s} {m.upper()}" for sys in systems for s in sets for m in ("wer", "cer")]
    lines = markdown_table.header(head)
    for n in budgets:
        row = [str(n)]
        for sys_ in systems:
            for s in sets:
                for m in ("wer", "cer"):
                    cell = table[sys_].get(n)
                    row.append(fmt_mean_std(*cell[s][m][:2]) if cell else "-")
        lines.append(markdown_table.row(row))
    return "\n".join(lines) + "\n"


def plot(table, plot_set: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for system, per in table.items():
        ns = sorted(per)
        ys = [per[n][plot_set]["wer"][0] for n in ns]
        errs = [per[n][plot_set]["wer"][1] or 0.0 for n in ns]
        ax.errorbar(ns, ys, yerr=errs, marker="o", capsize=3, label=system)
    ax.set_xscale("log")
    ax.set_xticks(budgets_of(table))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())  # only the budgets are labelled
    ax.set_xlabel("labeled utterances")
    ax.set_ylabel(f"{plot_set} WER (%)")
    ax.set_title("Label budget")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--point", type=_point, action="append", required=True, help="SYSTEM:N=DIR[,DIR...]")
    parser.add_argument("--pre_point", type=_point, action="append", default=[],
                        help="SYSTEM:N=DIR[,DIR...]: the preceding run of each run of a point (PT of PT+FT), "
                             "in the same order; its training CPU time is added")
    parser.add_argument("--decode_dir", required=True)
    parser.add_argument("--test_sets", nargs="+", required=True)
    parser.add_argument("--plot_set", default=None, help="set whose WER is plotted (default: last test set)")
    parser.add_argument("--out_dir", type=Path, required=True)
    args = parser.parse_args(argv)
    plot_set = args.plot_set or args.test_sets[-1]
    if plot_set not in args.test_sets:
        print(f"ERROR: --plot_set {plot_set} is not one of --test_sets {args.test_sets}", file=sys.stderr)
        return 1
    try:
        table, rows = collect(args.point, args.decode_dir, args.test_sets, args.pre_point)
        paired = paired_per_budget(rows, args.test_sets)
    except CompareError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    args.out_dir.mkdir(parents=True, exist_ok=True)
    md = (f"{plot_set} WER (%), mean ± sample std over the runs of a cell (the plot):\n\n"
          + markdown_plot_set(table, plot_set)
          + "\nWER and CER (%) on every set:\n\n" + markdown(table, args.test_sets))
    cpu_md = markdown_cpu(table)
    if cpu_md:
        md += ("\nTraining CPU time (s, user + system, mean ± std over the runs; PT+FT: PT + FT, the PT run "
               "counted in full at every budget):\n\n" + cpu_md)
    paired_md = markdown_paired_per_budget(paired, args.test_sets)
    if paired_md:
        md += "\n" + paired_md
    (args.out_dir / "label_budget.md").write_text(md, encoding="utf-8")
    js = {s: {str(n): c for n, c in per.items()} for s, per in table.items()}
    (args.out_dir / "label_budget.json").write_text(json.dumps(js, indent=2) + "\n", encoding="utf-8")
    paired_js = {str(n): {"pairs": p, "unpaired": u} for n, (p, u) in paired.items() if p or u}
    if paired_js:
        (args.out_dir / "label_budget_paired.json").write_text(json.dumps(paired_js, indent=2) + "\n",
                                                               encoding="utf-8")
    else:  # a rerun with one run per cell must not leave an earlier run's pairs behind
        (args.out_dir / "label_budget_paired.json").unlink(missing_ok=True)
    plot(table, plot_set, args.out_dir / "label_budget_wer.png")
    print(md, end="")
    print(f"wrote {args.out_dir}/label_budget.md, label_budget.json, label_budget_wer.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
