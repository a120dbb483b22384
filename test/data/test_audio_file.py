"""espnet_bilevel.data.audio_file: samples of one file, or one DataError naming the wav.scp line."""
import numpy as np
import pytest
import soundfile as sf

from espnet_bilevel.data.audio_file import num_samples, read_mono
from espnet_bilevel.data.kaldi_dir import DataError

WHERE = "data/x/wav.scp:3 (utterance u3)"


def _wav(path, samples, fs=16000):
    sf.write(str(path), samples, fs, subtype="PCM_16")
    return str(path)


def test_reads_mono_samples_and_header_length(tmp_path):
    x = (0.5 * np.sin(np.arange(4000) * 0.05)).astype(np.float32)
    path = _wav(tmp_path / "a.wav", x)
    got = read_mono(path, 16000, WHERE)
    assert got.dtype == np.float32 and got.shape == (4000,)
    assert np.abs(got - x).max() < 1e-4  # PCM_16 quantization only
    assert num_samples(path, WHERE) == 4000


@pytest.mark.parametrize("kind, message", [
    ("missing", "audio file not found"),
    ("pipe", "pipes are not supported by X, give an audio file"),
    ("garbage", "cannot read audio file"),
    ("rate", "has sample rate 8000 Hz, expected 16000 Hz (--fs)"),
    ("stereo", "has 2 channels; expected mono"),
])
def test_each_problem_is_one_line_naming_where_and_file(kind, message, tmp_path):
    path = str(tmp_path / "bad.wav")
    if kind == "pipe":
        path = "sox in.flac -t wav - |"
    elif kind == "garbage":
        (tmp_path / "bad.wav").write_bytes(b"RIFF not really a wav file\n" * 10)
    elif kind == "rate":
        _wav(path, np.zeros(800, np.float32), fs=8000)
    elif kind == "stereo":
        _wav(path, np.zeros((800, 2), np.float32))
    with pytest.raises(DataError) as e:
        read_mono(path, 16000, WHERE, pipe_note=" by X", fs_option="--fs")
    msg = str(e.value)
    assert msg.startswith(WHERE + ": ") and message in msg and path in msg and "\n" not in msg
    if kind in ("missing", "pipe", "garbage"):  # the header read fails the same way
        with pytest.raises(DataError, match="not found|pipes|cannot read"):
            num_samples(path, WHERE)
