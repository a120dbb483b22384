"""Synthesize the deterministic espeak-ng + sox mini corpus with labeled/unlabeled/dev/test splits.

Usage:
    python -m espnet_bilevel.bin.synth_corpus --out corpus [--seed 0] [--jobs 2]
    python -m espnet_bilevel.bin.synth_corpus --out corpus --n_labeled 60 --n_unlabeled 600 \
        --n_dev 40 --n_test 60 [--progress_every 100]
    python -m espnet_bilevel.bin.synth_corpus --out corpus_u2400 --extra_unlabeled 1800
        (the default corpus plus 1800 unlabeled utterances: same labeled, dev and test sets)

Writes corpus/wav/<split>/*.wav (16 kHz mono 16-bit), corpus/data/{train_labeled,train_unlabeled,
dev,test}/{wav.scp,text,utt2spk,spk2utt}, corpus/corpus_info.json (domains and counts per split)
and corpus/.done. Rerunning with the same arguments does nothing; different arguments on a
finished corpus are an error. Needs espeak-ng and sox (apt-get install espeak-ng sox).
Exit code 1 with "ERROR: ..." on failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from espnet_bilevel.data.cli import run_cli
from espnet_bilevel.data.synth_corpus import DEFAULT_SIZES, synthesize_corpus


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output corpus directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n_labeled", type=int, default=DEFAULT_SIZES["train_labeled"])
    parser.add_argument("--n_unlabeled", type=int, default=DEFAULT_SIZES["train_unlabeled"])
    parser.add_argument("--n_dev", type=int, default=DEFAULT_SIZES["dev"])
    parser.add_argument("--n_test", type=int, default=DEFAULT_SIZES["test"])
    parser.add_argument(
        "--extra_unlabeled",
        type=int,
        default=0,
        help="more train_unlabeled utterances from a random stream of their own; the other splits stay "
        "exactly those of --seed and the --n_* sizes",
    )
    parser.add_argument("--jobs", type=int, default=2, help="parallel synthesis threads")
    parser.add_argument("--progress_every", type=int, default=100, help="progress line every N utterances")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = {
        "train_labeled": args.n_labeled,
        "train_unlabeled": args.n_unlabeled,
        "dev": args.n_dev,
        "test": args.n_test,
    }
    synthesize_corpus(
        args.out,
        seed=args.seed,
        sizes=sizes,
        jobs=args.jobs,
        progress_every=args.progress_every,
        extra_unlabeled=args.extra_unlabeled,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
