"""Prepare Kaldi data dirs from an AN4 tree (read-only; wav.scp points at the .sph files).

Usage:
    python -m espnet_bilevel.bin.prepare_an4 --an4_root /work/shared/data/mini_an4/downloads/an4 --out data
    python -m espnet_bilevel.bin.prepare_an4 --an4_root downloads/an4 --out data --n_dev 100 [--no_check_audio]

Writes data/{train,train_nodev,train_dev,test}/{wav.scp,text,utt2spk,spk2utt}. train_dev is the
first --n_dev utterances of train in sort order (default: 100 if train has more than 200
utterances, else 1). Exit code 1 with "ERROR: ..." on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from espnet_bilevel.data.an4 import prepare_an4
from espnet_bilevel.data.cli import run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--an4_root", type=Path, required=True, help="the 'an4' directory (contains etc/ and wav/)")
    parser.add_argument("--out", type=Path, required=True, help="output directory for the data dirs")
    parser.add_argument("--n_dev", type=int, default=None)
    parser.add_argument("--no_check_audio", action="store_true", help="skip opening every audio file")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    written = prepare_an4(args.an4_root, args.out, n_dev=args.n_dev, check_audio=not args.no_check_audio)
    for name, path in written.items():
        n = sum(1 for _ in open(path / "utt2spk", encoding="utf-8"))
        print(f"prepare_an4: {name}: {n} utterances -> {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
