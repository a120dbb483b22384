"""Prepare TED-LIUM 2 data dirs (with segments) and a labeled/unlabeled split of the train talks.

Usage:
    python -m espnet_bilevel.bin.prepare_tedlium2 --root $TEDLIUM --out data [--download] \
        [--n_labeled_hours 50 | --labeled_fraction 0.25] [--seed 0] [--keep_noise_tags] [--check_audio]

--root is the directory that contains (or will contain) TEDLIUM_release2/. With --download the
archive TEDLIUM_release2.tar.gz is fetched from OpenSLR (resumable, SHA-256 verified) and extracted
when that directory is missing. Writes data/{train,dev,test} (wav.scp of .sph talks, segments,
text, utt2spk, spk2utt) and data/{train_labeled,train_unlabeled}, split by talk: by default 50 h
labeled of the ~207 h of training audio. Exit code 1 with "ERROR: ..." on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from espnet_bilevel.data.cli import run_cli
from espnet_bilevel.data.tedlium2 import (
    DEFAULT_LABELED_HOURS,
    URL,
    download_tedlium2,
    prepare_tedlium2,
    split_labeled_unlabeled,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="directory containing TEDLIUM_release2/")
    parser.add_argument("--out", type=Path, required=True, help="output directory for the data dirs")
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--url", default=URL)
    parser.add_argument("--no_verify", action="store_true", help="skip the SHA-256 check (mirrors, tests)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--n_labeled_hours", type=float, default=None,
                       help=f"hours of labeled training talks (default {DEFAULT_LABELED_HOURS})")
    group.add_argument("--labeled_fraction", type=float, default=None, help="fraction of training audio to label")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep_noise_tags", action="store_true", help="keep {NOISE} tags as [NOISE]")
    parser.add_argument("--check_audio", action="store_true", help="open every .sph header")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.download:
        download_tedlium2(args.root, url=args.url, verify=not args.no_verify)
    written = prepare_tedlium2(args.root, args.out, keep_noise_tags=args.keep_noise_tags, check_audio=args.check_audio)
    hours = args.n_labeled_hours if args.labeled_fraction is None and args.n_labeled_hours is not None else None
    if args.labeled_fraction is None and hours is None:
        hours = DEFAULT_LABELED_HOURS
    stats = split_labeled_unlabeled(
        written["train"], args.out / "train_labeled", args.out / "train_unlabeled",
        n_labeled_hours=hours, fraction=args.labeled_fraction, seed=args.seed,
    )
    print(
        f"prepare_tedlium2: train_labeled {stats['labeled_hours']:.2f} h ({stats['labeled_speakers']} talks), "
        f"train_unlabeled {stats['unlabeled_hours']:.2f} h ({stats['unlabeled_speakers']} talks)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
