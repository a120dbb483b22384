"""CLI tests for espnet_bilevel.bin.prepare_an4."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MINI_AN4 = Path("/work/shared/data/mini_an4/downloads/an4")


def run(*args):
    return subprocess.run([sys.executable, "-m", "espnet_bilevel.bin.prepare_an4", *map(str, args)],
                          capture_output=True, text=True)


@pytest.mark.skipif(not MINI_AN4.is_dir(), reason="mini_an4 not available")
def test_mini_an4(tmp_path):
    proc = run("--an4_root", MINI_AN4, "--out", tmp_path / "data")
    assert proc.returncode == 0, proc.stderr
    assert "train_nodev: 4 utterances" in proc.stderr
    assert (tmp_path / "data" / "test" / "text").read_text().splitlines() == [
        "fcaw-cen8-b ELEVEN TWENTY SEVEN FIFTY SEVEN", "mmxg-cen8-b OCTOBER TWENTY FOUR NINETEEN SEVENTY"]


def test_bad_root(tmp_path):
    proc = run("--an4_root", tmp_path, "--out", tmp_path / "data")
    assert proc.returncode == 1 and "ERROR: " in proc.stderr and "not an AN4 tree" in proc.stderr
    assert "Traceback" not in proc.stderr
