"""CLI tests for espnet_bilevel.bin.validate_data_dir (run as a subprocess, like the recipes do)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf


def run(*args):
    return subprocess.run([sys.executable, "-m", "espnet_bilevel.bin.validate_data_dir", *map(str, args)],
                          capture_output=True, text=True)


def make_dir(tmp_path: Path, reverse: bool = False) -> Path:
    d = tmp_path / "train"
    d.mkdir()
    utts = ["spk1-a", "spk1-b", "spk2-c"]
    for u in utts:
        sf.write(str(tmp_path / f"{u}.wav"), np.zeros(1600), 16000, subtype="PCM_16")
    order = list(reversed(utts)) if reverse else utts
    (d / "wav.scp").write_text("".join(f"{u} {tmp_path / (u + '.wav')}\n" for u in order))
    (d / "text").write_text("".join(f"{u} HELLO\n" for u in order))
    (d / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in order))
    return d


def test_ok(tmp_path):
    d = make_dir(tmp_path)
    proc = run(d)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"OK: {d}: 3 utterances, 2 speakers")


def test_error_then_fix(tmp_path):
    d = make_dir(tmp_path, reverse=True)
    proc = run(d)
    assert proc.returncode == 1
    assert proc.stderr.startswith("ERROR: ") and "wav.scp:2" in proc.stderr and "not sorted" in proc.stderr
    assert "Traceback" not in proc.stderr
    fixed = run("--fix", d)
    assert fixed.returncode == 0, fixed.stderr
    assert (d / "spk2utt").read_text() == "spk1 spk1-a spk1-b\nspk2 spk2-c\n"


def test_bad_rate_and_no_audio_flag(tmp_path):
    d = make_dir(tmp_path)
    proc = run(d, "--fs", "8000")
    assert proc.returncode == 1 and "16000 Hz, expected 8000 Hz" in proc.stderr
    assert run(d, "--fs", "8000", "--no_audio").returncode == 0
    missing = run(tmp_path / "nope")
    assert missing.returncode == 1 and "data directory not found" in missing.stderr


DATA_CLIS = ["synth_corpus", "prepare_an4", "prepare_librispeech", "prepare_tedlium2", "score", "validate_data_dir"]


def test_data_clis_are_light_and_documented():
    # Recipes call these as fast CLIs: importing them must not pull in torch or espnet2.
    code = (
        "import importlib, sys\n"
        f"for name in {DATA_CLIS!r}:\n"
        "    mod = importlib.import_module('espnet_bilevel.bin.' + name)\n"
        "    assert 'Usage:' in mod.__doc__ and f'python -m espnet_bilevel.bin.{name}' in mod.__doc__, name\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'espnet2', 'espnet')]\n"
        "print(heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
