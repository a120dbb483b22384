#!/usr/bin/env python3
"""Pack several experiments with ESPnet's own packer in ONE Python process.

Runs ``espnet2.bin.pack asr`` (its ``main``, unchanged: the same zip with the same ``meta.yaml``)
once per job, so torch and espnet2 are imported once instead of once per system; bilevel_asr.sh
stage 14 packs every system of a run with one call (8 systems: 1 start instead of 8).

Usage:
  python -m espnet_bilevel.bin.pack_many --jobs jobs.tsv

``jobs.tsv`` has one pack per line, tab-separated:

  <outpath.zip> <asr_train_config> <asr_model_file> [<option file> ...]

which is ``python -m espnet2.bin.pack asr --asr_train_config <config> --asr_model_file <model>
--option <file> ... --outpath <outpath.zip>``. Every input of every job is checked before anything
is packed. Each pack is written to ``<outpath>.tmp.zip`` and renamed when it is complete, so a
crash never leaves a complete-looking pack. Exit status 1 with "ERROR: ..." naming the job file
line or the pack that failed; packs finished before a failure are kept (they are complete).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

from espnet_bilevel.data.job_file import read_job_lines


def read_jobs(path: Path) -> List[List[str]]:
    """The jobs of ``path``, each [outpath, config, model, options...]; every input must exist."""
    jobs = []
    for lineno, fields in read_job_lines(path):
        if len(fields) < 3:
            raise SystemExit(f"ERROR: {path}:{lineno}: expected <outpath.zip> <asr_train_config> "
                             f"<asr_model_file> [<option file> ...], tab-separated; got {len(fields)} field(s)")
        if not fields[0].endswith(".zip"):
            raise SystemExit(f"ERROR: {path}:{lineno}: the output must be a .zip file, got {fields[0]}")
        for f in fields[1:]:
            if not Path(f).is_file():
                raise SystemExit(f"ERROR: {path}:{lineno}: file not found: {f}")
        jobs.append(fields)
    if not jobs:
        raise SystemExit(f"ERROR: {path}: no jobs")
    return jobs


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=Path, required=True, help="tab-separated job file, one pack per line")
    args = parser.parse_args(argv)
    jobs = read_jobs(args.jobs)

    from espnet2.bin.pack import main as espnet_pack  # after the checks: a bad job file fails fast

    for i, (outpath, config, model, *options) in enumerate(jobs, 1):
        tmp = outpath[: -len(".zip")] + ".tmp.zip"
        if os.path.exists(tmp):
            os.remove(tmp)
        cmd = ["asr", "--asr_train_config", config, "--asr_model_file", model]
        for o in options:
            cmd += ["--option", o]
        t0 = time.perf_counter()
        try:
            espnet_pack(cmd + ["--outpath", tmp])
        except Exception as e:  # one clear line, not a traceback, and no half-written pack left
            if os.path.exists(tmp):
                os.remove(tmp)
            print(f"ERROR: packing {outpath} ({config}, {model}) failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        os.replace(tmp, outpath)
        print(f"pack_many: {outpath} ({i}/{len(jobs)}, {time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
