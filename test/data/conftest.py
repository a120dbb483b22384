"""Fixtures shared by the data-utility tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_test_utils import write_audio, write_lines


@pytest.fixture
def good_dir(tmp_path: Path) -> Path:
    """A valid 3-utterance, 2-speaker data dir with real 16 kHz mono wavs."""
    d = tmp_path / "data" / "train"
    d.mkdir(parents=True)
    utts = [("spkA-u1", "spkA", "HELLO WORLD"), ("spkA-u2", "spkA", "GOOD DAY"), ("spkB-u3", "spkB", "YES")]
    write_lines(d / "wav.scp", [f"{u} {write_audio(tmp_path / 'wav' / (u + '.wav'))}" for u, _, _ in utts])
    write_lines(d / "text", [f"{u} {t}" for u, _, t in utts])
    write_lines(d / "utt2spk", [f"{u} {s}" for u, s, _ in utts])
    write_lines(d / "spk2utt", ["spkA spkA-u1 spkA-u2", "spkB spkB-u3"])
    return d
