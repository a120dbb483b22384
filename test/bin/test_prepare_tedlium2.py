"""CLI tests for espnet_bilevel.bin.prepare_tedlium2 (fake corpus in the real layout)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf


def run(*args):
    return subprocess.run([sys.executable, "-m", "espnet_bilevel.bin.prepare_tedlium2", *map(str, args)],
                          capture_output=True, text=True)


def make_corpus(root: Path) -> None:
    for set_name, talks in {"train": ["TalkA", "TalkB", "TalkC"], "dev": ["TalkD"], "test": ["TalkE"]}.items():
        for talk in talks:
            for sub in ("sph", "stm"):
                (root / "TEDLIUM_release2" / set_name / sub).mkdir(parents=True, exist_ok=True)
            sf.write(str(root / "TEDLIUM_release2" / set_name / "sph" / f"{talk}.sph"), np.zeros(16000 * 4), 16000,
                     format="NIST", subtype="PCM_16")
            (root / "TEDLIUM_release2" / set_name / "stm" / f"{talk}.stm").write_text(
                f"{talk} 1 {talk} 0.00 1.00 <o,f0,male> ignore_time_segment_in_scoring\n"
                f"{talk} 1 {talk} 1.00 2.50 <o,f0,male> hello there\n"
                f"{talk} 1 {talk} 2.50 3.90 <o,f0,male> it 's me\n")


def test_prepare_with_fraction(tmp_path):
    make_corpus(tmp_path / "corpus")
    proc = run("--root", tmp_path / "corpus", "--out", tmp_path / "data", "--labeled_fraction", "0.3", "--check_audio")
    assert proc.returncode == 0, proc.stderr
    assert "train_labeled" in proc.stderr
    lab = (tmp_path / "data" / "train_labeled" / "utt2spk").read_text().split()
    unl = (tmp_path / "data" / "train_unlabeled" / "utt2spk").read_text().split()
    assert len(lab) // 2 == 2 and len(unl) // 2 == 4
    assert (tmp_path / "data" / "test" / "text").read_text() == (
        "TalkE-0000100-0000250 hello there\nTalkE-0000250-0000390 it's me\n")


def test_default_hours_too_large_for_fake(tmp_path):
    make_corpus(tmp_path / "corpus")
    proc = run("--root", tmp_path / "corpus", "--out", tmp_path / "data")
    assert proc.returncode == 1 and "ERROR: " in proc.stderr and "not below the total" in proc.stderr
    assert "Traceback" not in proc.stderr
