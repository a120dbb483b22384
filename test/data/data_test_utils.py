"""Helpers for the data-utility tests: tiny audio files and text tables (imported by conftest/tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def write_audio(path: Path, seconds: float = 0.2, fs: int = 16000, channels: int = 1, fmt: str = "WAV") -> Path:
    """Write a short deterministic tone (``fmt`` WAV, FLAC or NIST)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * fs))
    t = np.arange(n) / fs
    mono = 0.1 * np.sin(2 * np.pi * 440.0 * t)
    data = mono if channels == 1 else np.stack([mono] * channels, axis=1)
    sf.write(str(path), data, fs, format=fmt, subtype="PCM_16")
    return path


def write_lines(path: Path, lines) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path
