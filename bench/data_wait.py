#!/usr/bin/env python3
"""Share of training-step time spent waiting for data, from an experiment's per-step logs.

Every step of the bilevel trainer records its wall time and the time spent in the data loaders
(``<exp>/steps/epoch<k>.jsonl``: ``time``, ``data_wait``).  This prints, per experiment, the
total step time, the total data wait and their ratio (target <= 10 %), per phase too.

Usage:
  tools/venv/bin/python bench/data_wait.py egs2/mini_synth/asr1/exp/asr_bljust*
  tools/venv/bin/python bench/data_wait.py exp/a exp/b --skip_first 2
"""
import argparse
import json
from collections import defaultdict
from pathlib import Path


def summarize(exp: Path, skip_first: int = 1):
    tot = defaultdict(lambda: [0.0, 0.0, 0])
    for log in sorted((exp / "steps").glob("epoch*.jsonl")):
        for i, line in enumerate(log.open()):
            if i < skip_first:  # the first step of an epoch pays DataLoader start-up
                continue
            s = json.loads(line)
            for key in ("all", s["phase"]):
                tot[key][0] += s["time"]
                tot[key][1] += s.get("data_wait", 0.0)
                tot[key][2] += 1
    return dict(tot)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("exp_dirs", nargs="+", type=Path)
    ap.add_argument("--skip_first", type=int, default=1, help="steps skipped at each epoch start")
    a = ap.parse_args()
    for exp in a.exp_dirs:
        tot = summarize(exp, a.skip_first)
        if not tot:
            print(f"{exp}: no steps/epoch*.jsonl")
            continue
        for key in ["all"] + sorted(k for k in tot if k != "all"):
            t, w, n = tot[key]
            print(f"{exp} [{key:5s}] steps={n:5d} step_time={t:8.1f}s data_wait={w:7.2f}s "
                  f"share={100 * w / max(t, 1e-9):5.1f}%")


if __name__ == "__main__":
    main()
