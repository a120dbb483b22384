#!/usr/bin/env python3
"""Training statistics of finished runs at one epoch, as a markdown table (mean ± std over seeds).

Reads what ESPnet's reporter saved in each exp dir's checkpoint.pth (every value the trainer logs
in "N epoch results", e.g. the SSL losses' accuracies and codebook usage), so a question such as
"did BiRQ's enhanced labels collapse?" is one command instead of digging in train.log.

Usage:
  python -m espnet_bilevel.bin.training_stats \\
      --run "birq=exp/asr_birq_pt_raw_char_seed1,exp/asr_birq_pt_raw_char_seed2" \\
      --run "birq w2 0=exp/asr_birq_pt_raw_char_w2zero_seed1" \\
      --key valid.ssl_enhanced_code_entropy --key valid.ssl_enhanced_code_usage [--epoch last]

  --run NAME=DIR[,DIR...]  one row (NAME without "="); several dirs (seeds) give mean ± sample std
  --key MODE.NAME          a column: MODE is train or valid, NAME a reported value (repeatable)
  --epoch last|N           the epoch to read (default: each run's last epoch)
  --digits N               decimals (default 3)

A cell is "-" where a run did not report that value (e.g. BiRQ-only statistics in a BEST-RQ row).
Exit status 1 with "ERROR: ..." for a missing dir or epoch, or a key that no run reported.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

from espnet_bilevel.bin.compare_systems import name_and_dirs, fmt_mean_std, mean_std
from espnet_bilevel.data import markdown_table


class StatsError(Exception):
    pass


def reporter_stats(exp: Path) -> Dict[int, dict]:
    """{epoch: {mode: {key: value}}} from <exp>/checkpoint.pth (ESPnet's reporter state)."""
    ckpt = exp / "checkpoint.pth"
    if not ckpt.is_file():
        raise StatsError(f"{ckpt}: not found (is {exp} a finished or running ESPnet training dir?)")
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    stats = (state.get("reporter") or {}).get("stats")
    if not stats:
        raise StatsError(f"{ckpt}: no reporter statistics")
    return {int(e): v for e, v in stats.items()}


def value_at(stats: Dict[int, dict], exp: Path, key: str, epoch: Optional[int]) -> Optional[float]:
    """The value, or None if that run did not report the key (e.g. a BiRQ-only statistic)."""
    mode, _, name = key.partition(".")
    e = max(stats) if epoch is None else epoch
    if e not in stats:
        raise StatsError(f"{exp}: no epoch {e} (epochs {min(stats)}-{max(stats)})")
    value = stats[e].get(mode, {}).get(name)
    return None if value is None else float(value)


def reported(stats: Dict[int, dict], key: str) -> str:
    mode = key.partition(".")[0]
    return ", ".join(sorted(stats[max(stats)].get(mode, {}))) or "none"


def table(runs: List[tuple], keys: List[str], epoch: Optional[int], digits: int) -> str:
    """A cell is "-" when a run of that row did not report the key; a key no run reported is an error."""
    head = ["run", "runs", "epoch"] + keys
    lines = markdown_table.header(head)
    found = {key: False for key in keys}
    first = None
    for name, dirs in runs:
        all_stats = [reporter_stats(d) for d in dirs]
        first = first or (dirs[0], all_stats[0])
        epochs = sorted({max(s) if epoch is None else epoch for s in all_stats})
        cells = [name, str(len(dirs)), ",".join(map(str, epochs))]
        for key in keys:
            values = [value_at(s, d, key, epoch) for s, d in zip(all_stats, dirs)]
            found[key] |= any(v is not None for v in values)
            mean, std = mean_std(values)
            cells.append(fmt_mean_std(mean, std, digits))
        lines.append(markdown_table.row(cells))
    missing = [k for k, ok in found.items() if not ok]
    if missing:
        exp, stats = first
        raise StatsError(f"no run reported {', '.join(missing)} (e.g. {exp} reported "
                         f"{missing[0].partition('.')[0]} values: {reported(stats, missing[0])})")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=name_and_dirs, action="append", required=True, help="NAME=DIR[,DIR...]")
    p.add_argument("--key", action="append", required=True, help="MODE.NAME, e.g. valid.ssl_acc")
    p.add_argument("--epoch", default="last", help="last or an epoch number")
    p.add_argument("--digits", type=int, default=3)
    a = p.parse_args(argv)
    for key in a.key:
        if key.partition(".")[0] not in ("train", "valid") or not key.partition(".")[2]:
            p.error(f"--key {key!r}: expected train.NAME or valid.NAME")
    if a.epoch != "last" and not a.epoch.isdigit():
        p.error(f"--epoch {a.epoch!r}: expected last or a number")
    epoch = None if a.epoch == "last" else int(a.epoch)
    try:
        print(table(a.run, a.key, epoch, a.digits), end="")
    except StatsError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
