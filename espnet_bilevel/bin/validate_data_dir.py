"""Validate (and optionally fix) a Kaldi-style data dir.

Usage:
    python -m espnet_bilevel.bin.validate_data_dir data/train [--fs 16000] [--token_list tokens.txt]
    python -m espnet_bilevel.bin.validate_data_dir data/train_unlabeled --no_text --no_audio
    python -m espnet_bilevel.bin.validate_data_dir --fix data/train

Checks required files, duplicate/unsorted ids, matching ids across wav.scp/text/utt2spk(/segments),
empty transcripts, pipes in wav.scp, and (unless --no_audio) that every audio file exists, is
readable by soundfile, non-empty, mono and at --fs Hz; with --token_list, that every transcript
character is in the char token list. --fix first sorts the tables, drops utterances missing from
one of them and rewrites spk2utt. Prints "OK: ..." and exits 0, or "ERROR: ..." and exits 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from espnet_bilevel.data.cli import run_cli
from espnet_bilevel.data.kaldi_dir import fix_data_dir, validate_data_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--no_text", action="store_true", help="text is optional (unlabeled data)")
    parser.add_argument("--no_audio", action="store_true", help="do not open the audio files")
    parser.add_argument("--fs", type=int, default=16000, help="expected sample rate")
    parser.add_argument("--token_list", type=Path, default=None, help="char token list to check text against")
    parser.add_argument("--fix", action="store_true", help="sort tables, drop incomplete utterances, rewrite spk2utt")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.fix:
        summary = fix_data_dir(args.data_dir, require_text=not args.no_text)
        print(f"fixed {args.data_dir}: kept {summary['kept']} utterances, dropped {summary['dropped']}", file=sys.stderr)
    data = validate_data_dir(
        args.data_dir,
        require_text=not args.no_text,
        check_audio=not args.no_audio,
        expected_fs=args.fs,
        token_list=args.token_list,
    )
    print(f"OK: {args.data_dir}: {len(data.utt2spk)} utterances, {len(set(data.utt2spk.values()))} speakers")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
