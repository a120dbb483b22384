"""CLI tests for espnet_bilevel.bin.prepare_librispeech (fake corpus, local file:// mirror)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf


def run(*args):
    return subprocess.run([sys.executable, "-m", "espnet_bilevel.bin.prepare_librispeech", *map(str, args)],
                          capture_output=True, text=True)


def make_mirror(tmp_path: Path) -> Path:
    chapter = tmp_path / "build" / "LibriSpeech" / "dev-clean" / "84" / "121123"
    chapter.mkdir(parents=True)
    for i in range(2):
        sf.write(str(chapter / f"84-121123-{i:04d}.flac"), np.zeros(1600), 16000, format="FLAC", subtype="PCM_16")
    (chapter / "84-121123.trans.txt").write_text("84-121123-0000 GO DO YOU HEAR\n84-121123-0001 YES\n")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with tarfile.open(mirror / "dev-clean.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "build" / "LibriSpeech", arcname="LibriSpeech")
    return mirror


def test_download_and_prepare(tmp_path):
    mirror = make_mirror(tmp_path)
    proc = run("--root", tmp_path / "root", "--out", tmp_path / "data", "--parts", "dev-clean", "--download",
               "--url_base", mirror.as_uri(), "--no_verify", "--check_audio")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "data" / "dev_clean" / "utt2spk").read_text() == (
        "84-121123-0000 84-121123\n84-121123-0001 84-121123\n")


def test_missing_part(tmp_path):
    proc = run("--root", tmp_path, "--out", tmp_path / "data", "--parts", "test-clean")
    assert proc.returncode == 1 and "ERROR: LibriSpeech part directory not found" in proc.stderr
    assert "Traceback" not in proc.stderr
