"""Shared plumbing for the data CLIs: expected errors become one ``ERROR:`` line and exit code 1."""

from __future__ import annotations

import sys
from typing import Callable, List, Optional

from espnet_bilevel.data.kaldi_dir import DataError


def run_cli(main: Callable[[Optional[List[str]]], int], argv: Optional[List[str]] = None) -> int:
    """Run ``main(argv)``; a DataError is printed as ``ERROR: <message>`` (no traceback), rc 1."""
    try:
        return int(main(argv) or 0)
    except DataError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ERROR: interrupted", file=sys.stderr)
        return 130
