#!/usr/bin/env python3
"""Label-budget curve: WER/CER against the number of labeled utterances, per system.

Usage (egs2/mini_synth/asr1/local/label_budget.sh, last stage):
  python -m espnet_bilevel.bin.label_budget_curve \\
      --point supervised:25=exp_budget/asr_supervised_raw_char_n25 \\
      --point bljust:25=exp_budget/asr_bljust_raw_char_n25 ... \\
      --decode_dir decode_decode_ctc_greedy_valid.cer_ctc.ave --test_sets dev test \\
      --plot_set test --out_dir exp_budget/label_budget

Each ``--point SYSTEM:N=DIR`` is one trained system at label budget N (DIR as in compare_systems:
DIR/<decode_dir>/<set>/scoring/result.json). Several DIRs (comma-separated, e.g. seeds) make the
cell a mean ± std. Writes <out_dir>/label_budget.md (table: rows = budgets, columns = systems,
WER and CER per set), label_budget.json and label_budget_wer.png (WER on --plot_set against N,
log-scale x axis, one line per system, error bars when several runs). Exit 1 with "ERROR: ..."
when a result file is missing.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_bilevel.bin.compare_systems import CompareError, fmt_mean_std, mean_std, read_scores


def _point(value: str) -> Tuple[str, int, List[Path]]:
    """SYSTEM:N=DIR[,DIR...] -> (SYSTEM, N, [DIR, ...])."""
    head, _, paths = value.partition("=")
    system, _, n = head.partition(":")
    parts = paths.split(",")
    if not system or not n.isdigit() or not paths or "" in parts:
        raise argparse.ArgumentTypeError(f"expected SYSTEM:N=DIR[,DIR...], got {value!r}")
    return system, int(n), [Path(p) for p in parts]


def collect(points, decode_dir: str, sets: List[str]) -> Dict[str, Dict[int, dict]]:
    """{system: {budget: {set: {metric: (mean, std, n_runs)}}}}"""
    table: Dict[str, Dict[int, dict]] = {}
    for system, n, dirs in points:
        runs = [read_scores(d, decode_dir, sets) for d in dirs]
        cell = {}
        for s in sets:
            cell[s] = {}
            for metric in ("wer", "cer"):
                m, sd = mean_std([r[s][metric] for r in runs])
                cell[s][metric] = (m, sd, len(runs))
        table.setdefault(system, {})[n] = cell
    return table


def markdown(table, sets: List[str]) -> str:
    systems = list(table)
    budgets = sorted({n for per in table.values() for n in per})
    head = ["labeled utts"] + [f"{sys} {s} {m.upper()}" for sys in systems for s in sets for m in ("wer", "cer")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in budgets:
        row = [str(n)]
        for sys_ in systems:
            for s in sets:
                for m in ("wer", "cer"):
                    cell = table[sys_].get(n)
                    row.append(fmt_mean_std(*cell[s][m][:2]) if cell else "-")
        lines.append("| " + " | ".join(row) + " |")
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
    ax.set_xticks(sorted({n for per in table.values() for n in per}))
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
        table = collect(args.point, args.decode_dir, args.test_sets)
    except CompareError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    args.out_dir.mkdir(parents=True, exist_ok=True)
    md = markdown(table, args.test_sets)
    (args.out_dir / "label_budget.md").write_text(md, encoding="utf-8")
    js = {s: {str(n): c for n, c in per.items()} for s, per in table.items()}
    (args.out_dir / "label_budget.json").write_text(json.dumps(js, indent=2) + "\n", encoding="utf-8")
    plot(table, plot_set, args.out_dir / "label_budget_wer.png")
    print(md, end="")
    print(f"wrote {args.out_dir}/label_budget.md, label_budget.json, label_budget_wer.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
