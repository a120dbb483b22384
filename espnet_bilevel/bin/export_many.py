#!/usr/bin/env python3
"""Export several bilevel experiments as stock ESPnet models in ONE process.

Calls ``espnet_bilevel.bin.bilevel_export`` (same checks, same output) for each experiment, so the
~17 s ESPnet import is paid once instead of once per system (bilevel_asr.sh stage 12).

Usage:
  python -m espnet_bilevel.bin.export_many --exp exp/asr_bljust_x --exp exp/asr_supervised_x \\
      [--model valid.cer_ctc.ave.pth] [--out_name export]

For each ``--exp E`` it exports ``E/config.yaml`` + ``E/<model>`` to ``E/<out_name>/{config.yaml,
model.pth}`` (E may be a bilevel experiment or a stock ``espnet2.bin.asr_train`` one, see
bilevel_export) and records the source in ``E/<out_name>/source_model``. An export whose
``source_model`` already names the same (resolved) model file is skipped. Exit status 1 with
"ERROR: ..." if an input is missing or the export fails its self-check.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, action="append", required=True, help="experiment dir (repeatable)")
    parser.add_argument("--model", default="valid.cer_ctc.ave.pth", help="model file name inside each exp dir")
    parser.add_argument("--out_name", default="export", help="output sub-directory name")
    args = parser.parse_args(argv)

    todo = []
    for exp in args.exp:
        for p in (exp / "config.yaml", exp / args.model):
            if not p.exists():
                print(f"ERROR: {p}: not found (train the system first: stage 11)", file=sys.stderr)
                return 1
        source = f"{args.model} -> {os.path.realpath(exp / args.model)}"
        marker = exp / args.out_name / "source_model"
        if marker.is_file() and marker.read_text(encoding="utf-8").strip() == source \
                and (exp / args.out_name / "model.pth").is_file():
            print(f"export_many: {exp / args.out_name} is up to date; skipped", file=sys.stderr)
            continue
        todo.append((exp, source))
    if not todo:
        return 0

    from espnet_bilevel.bin.bilevel_export import ExportError, export

    for exp, source in todo:
        out = exp / args.out_name
        marker = out / "source_model"
        if marker.exists():
            marker.unlink()
        try:
            export(exp / "config.yaml", exp / args.model, out)
        except ExportError as e:
            print(f"ERROR: {exp}: {e}", file=sys.stderr)
            return 1
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(source + "\n", encoding="utf-8")
        tmp.replace(marker)
        print(f"export_many: {exp / args.model} -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
