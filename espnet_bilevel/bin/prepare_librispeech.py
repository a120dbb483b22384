"""Prepare Kaldi data dirs for LibriSpeech parts, optionally downloading them from OpenSLR.

Usage:
    python -m espnet_bilevel.bin.prepare_librispeech --root $LIBRISPEECH --out data \
        --parts train-clean-100 dev-clean dev-other test-clean test-other [--download] [--check_audio]
    python -m espnet_bilevel.bin.prepare_librispeech --root downloads --out data --parts dev-clean \
        --download --url_base file:///path/to/mirror --no_verify

--root is the directory that contains (or will contain) LibriSpeech/<part>/. With --download a
missing part is fetched as <root>/<part>.tar.gz (resumable, SHA-256 verified) and extracted;
parts whose directory exists are never downloaded. Writes data/<part with _>/{wav.scp,text,
utt2spk,spk2utt} (wav.scp points at the .flac files). Exit code 1 with "ERROR: ..." on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from espnet_bilevel.data.cli import run_cli
from espnet_bilevel.data.librispeech import PARTS, URL_BASE, download_librispeech, prepare_librispeech


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="directory containing LibriSpeech/")
    parser.add_argument("--out", type=Path, required=True, help="output directory for the data dirs")
    parser.add_argument("--parts", nargs="+", choices=PARTS, required=True)
    parser.add_argument("--download", action="store_true", help="download and extract missing parts")
    parser.add_argument("--url_base", default=URL_BASE, help="where <part>.tar.gz files live")
    parser.add_argument("--no_verify", action="store_true", help="skip the SHA-256 check (mirrors, tests)")
    parser.add_argument("--check_audio", action="store_true", help="open every flac header (slow)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.download:
        download_librispeech(args.root, args.parts, url_base=args.url_base, verify=not args.no_verify)
    written = prepare_librispeech(args.root, args.parts, args.out, check_audio=args.check_audio)
    for part, path in written.items():
        n = sum(1 for _ in open(path / "utt2spk", encoding="utf-8"))
        print(f"prepare_librispeech: {part}: {n} utterances -> {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
