"""Write a labeled subset of N utterances, balanced over speaker groups (label-budget curves).

Usage:
    python -m espnet_bilevel.bin.subset_data_dir data/train_labeled data/train_labeled_n50 --num_utts 50
    python -m espnet_bilevel.bin.subset_data_dir data/train_labeled data/train_labeled_n25 --num_utts 25 --seed 1

Groups are the speaker-id prefix before the first "_" (the domain in the embedded corpus);
utterances are dealt round-robin over groups in a seeded order, so every smaller budget is a
subset of every larger one. The output dir is written atomically (wav.scp, text, utt2spk, spk2utt).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from espnet_bilevel.data.cli import run_cli
from espnet_bilevel.data.kaldi_dir import read_data_dir
from espnet_bilevel.data.label_budget import group_counts, write_budget_subset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path, help="source data dir (with text)")
    parser.add_argument("dst", type=Path, help="output data dir")
    parser.add_argument("--num_utts", type=int, required=True, help="number of utterances to keep")
    parser.add_argument("--seed", type=int, default=0, help="order inside each speaker group")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    write_budget_subset(args.src, args.dst, args.num_utts, seed=args.seed)
    out = read_data_dir(args.dst)
    counts = group_counts(out.utt2spk, out.utt_ids)
    print(f"OK: {args.dst}: {len(out.utt_ids)} utterances; per group: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
