"""CLI tests for espnet_bilevel.bin.synth_corpus (named *_cli so it does not clash with
test/data/test_synth_corpus.py: the test dirs have no __init__.py, so basenames must be unique)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run([sys.executable, "-m", "espnet_bilevel.bin.synth_corpus", *map(str, args)],
                          capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None, reason="espeak-ng/sox missing")
def test_tiny_corpus_and_rerun(tmp_path):
    args = ["--out", tmp_path / "corpus", "--seed", "5", "--n_labeled", "2", "--n_unlabeled", "4", "--n_dev", "1",
            "--n_test", "1", "--jobs", "2", "--progress_every", "4"]
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
    assert "4/8 utterances" in proc.stderr
    info = json.loads((tmp_path / "corpus" / "corpus_info.json").read_text())
    assert {k: v["n_utts"] for k, v in info["splits"].items()} == {
        "train_labeled": 2, "train_unlabeled": 4, "dev": 1, "test": 1}
    again = run(*args)
    assert again.returncode == 0 and "already complete" in again.stderr
    changed = run(*args[:-2], "--n_test", "2")
    assert changed.returncode == 1 and "ERROR: " in changed.stderr and "different arguments" in changed.stderr
    assert "Traceback" not in changed.stderr


def test_bad_size(tmp_path):
    proc = run("--out", tmp_path / "c", "--n_dev", "0")
    assert proc.returncode == 1 and "ERROR: split 'dev' must have at least 1 utterance" in proc.stderr
