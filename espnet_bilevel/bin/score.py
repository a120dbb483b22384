"""Score ASR hypotheses (WER and CER) with our own aligner and, when installed, sclite.

Usage:
    python -m espnet_bilevel.bin.score --ref data/test/text --hyp exp/asr/decode_test/1best_recog/text \
        --out_dir exp/asr/decode_test/score [--utt2spk data/test/utt2spk] [--no_sclite]
    python -m espnet_bilevel.bin.score --markdown exp/asr/decode_dev/score/result.json \
        exp/asr/decode_test/score/result.json [--metric wer|cer] [--scorer python|sclite]

The first form writes <out_dir>/result.txt, <out_dir>/result.json and
<out_dir>/score_{wer,cer}/{ref.trn,hyp.trn[,sclite.txt]} and prints result.txt. Utterances of the
reference without a hypothesis count as deletions and are listed. The second form prints a
RESULTS.md-style markdown table (dataset name = parent dir of the result.json's dir).
Exit code 1 with "ERROR: ..." on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from espnet_bilevel.data.cli import run_cli
from espnet_bilevel.data.kaldi_dir import DataError
from espnet_bilevel.data.scoring import format_result, results_markdown, score


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", type=Path, help="reference Kaldi text file")
    parser.add_argument("--hyp", type=Path, help="hypothesis Kaldi text file")
    parser.add_argument("--out_dir", type=Path, help="where result.txt/result.json/trn files go")
    parser.add_argument("--utt2spk", type=Path, default=None, help="speaker ids for the trn labels")
    parser.add_argument("--no_sclite", action="store_true", help="do not run sclite even if installed")
    parser.add_argument("--markdown", type=Path, nargs="+", help="result.json files to render as a table")
    parser.add_argument("--metric", choices=["wer", "cer"], default="wer")
    parser.add_argument("--scorer", choices=["python", "sclite"], default="python")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.markdown:
        results = {}
        for path in args.markdown:
            if not path.is_file():
                raise DataError(f"{path}: result file not found")
            try:
                results[path.resolve().parent.parent.name] = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: not a valid result.json ({exc})")
        print(results_markdown(results, args.metric, args.scorer), end="")
        return 0
    if not (args.ref and args.hyp and args.out_dir):
        raise DataError("--ref, --hyp and --out_dir are required (or use --markdown)")
    result = score(args.ref, args.hyp, args.out_dir, utt2spk=args.utt2spk, use_sclite=not args.no_sclite)
    print(format_result(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
