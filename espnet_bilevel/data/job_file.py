"""Job files of the one-process-many-jobs entry points (decode_many, pack_many): one job per line,
fields separated by tabs (paths may contain spaces), blank lines and lines starting with # ignored.
stdlib only, so reading (and rejecting) a job file never waits for a torch or espnet2 import."""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple


def read_job_lines(path: Path) -> List[Tuple[int, List[str]]]:
    """(line number, tab-separated fields) of every job line of ``path``; a missing file is an
    error naming it. Checking the fields is the caller's: each tool has its own columns."""
    if not path.is_file():
        raise SystemExit(f"ERROR: job file not found: {path}")
    jobs = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            jobs.append((lineno, line.split("\t")))
    return jobs
