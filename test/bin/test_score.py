"""CLI tests for espnet_bilevel.bin.score."""

from __future__ import annotations

import json
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "espnet_bilevel.bin.score", *map(str, args)],
                          capture_output=True, text=True)


def test_score_and_markdown(tmp_path):
    ref = tmp_path / "ref"
    hyp = tmp_path / "hyp"
    ref.write_text("s-1 A B C D\ns-2 E F\n")
    hyp.write_text("s-1 A X C\n")
    out = tmp_path / "decode_test" / "score"
    proc = run("--ref", ref, "--hyp", hyp, "--out_dir", out)
    assert proc.returncode == 0, proc.stderr
    assert "missing hypotheses (scored as deletions): 1" in proc.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["wer"]["python"]["errors"] == 4 and result["wer"]["python"]["n_ref_tokens"] == 6
    if result["sclite"]:
        assert result["wer"]["sclite"]["n_err"] == 4
    table = run("--markdown", out / "result.json")
    assert table.returncode == 0
    assert "|decode_test|2|6|33.3|16.7|50.0|0.0|66.7|100.0|" in table.stdout


def test_errors(tmp_path):
    proc = run("--ref", tmp_path / "missing", "--hyp", tmp_path / "missing", "--out_dir", tmp_path / "o")
    assert proc.returncode == 1 and proc.stderr.startswith("ERROR: ") and "file not found" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert run("--ref", tmp_path / "x").returncode == 1
