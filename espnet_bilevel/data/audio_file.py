"""Read one audio file named by a wav.scp line; any problem is one DataError naming that line.

Shared by the feature extractors that read samples themselves (``bin/extract_fbank``,
``ssl_targets/mfcc_kmeans``).  Data-dir validation (header checks over a whole dir) is
``kaldi_dir.check_audio_file``.  soundfile and numpy are imported lazily: the data CLIs that only
touch text files must stay fast to start.
"""
from __future__ import annotations

from pathlib import Path

from espnet_bilevel.data.kaldi_dir import DataError


def _check_path(path: str, where: str, pipe_note: str) -> None:
    if path.rstrip().endswith("|"):
        raise DataError(f"{where}: pipes are not supported{pipe_note}, give an audio file: {path}")
    if not Path(path).is_file():
        raise DataError(f"{where}: audio file not found: {path}")


def _read_error(path: str, where: str, exc: Exception) -> DataError:
    msg = " ".join(str(exc).split())  # libsndfile messages can span lines: keep one line
    return DataError(f"{where}: cannot read audio file {path}: {msg}")


def read_mono(path: str, fs: int, where: str, pipe_note: str = "", fs_option: str = ""):
    """Mono float32 samples (numpy, in [-1, 1]) of ``path``, which must be at ``fs`` Hz.

    ``where`` prefixes every message (e.g. ``data/train/wav.scp:12 (utterance u12)``);
    ``pipe_note`` / ``fs_option`` let the caller say why pipes fail or which option sets fs.
    """
    import numpy as np
    import soundfile

    _check_path(path, where, pipe_note)
    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - libsndfile raises several types
        raise _read_error(path, where, exc) from None
    if rate != fs:
        option = f" ({fs_option})" if fs_option else ""
        raise DataError(f"{where}: audio file {path} has sample rate {rate} Hz, expected {fs} Hz{option}")
    if samples.shape[1] != 1:
        raise DataError(f"{where}: audio file {path} has {samples.shape[1]} channels; expected mono")
    return np.ascontiguousarray(samples[:, 0])


def num_samples(path: str, where: str) -> int:
    """Length in samples from the file header (cheap: no samples are read)."""
    import soundfile

    _check_path(path, where, "")
    try:
        return int(soundfile.info(path).frames)
    except Exception as exc:  # noqa: BLE001
        raise _read_error(path, where, exc) from None
