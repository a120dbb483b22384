"""espnet_bilevel.bin.extract_fbank: shapes, frame counts, determinism, kaldiio round trip, merge,
and the errors for unreadable audio (bilevel_asr.sh --feats_type fbank, stage 3)."""
from __future__ import annotations

import subprocess
import sys

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from espnet_bilevel.bin import extract_fbank as ef
from espnet_bilevel.data.kaldi_dir import DataError


def write_wav(path, seconds, fs=16000, seed=0):
    rng = np.random.default_rng(seed)
    sf.write(str(path), (0.1 * rng.standard_normal(int(round(seconds * fs)))).astype(np.float32), fs,
             subtype="PCM_16")
    return path


@pytest.fixture
def corpus(tmp_path):
    lengths = {"utt_a": 1.0, "utt_b": 0.5, "utt_c": 0.73}
    lines = []
    for i, (utt, sec) in enumerate(lengths.items()):
        lines.append(f"{utt} {write_wav(tmp_path / f'{utt}.wav', sec, seed=i)}")
    scp = tmp_path / "wav.scp"
    scp.write_text("\n".join(lines) + "\n")
    return scp, lengths


def expected_frames(seconds, fs=16000, win_ms=25, shift_ms=10):
    n, win, shift = int(round(seconds * fs)), fs * win_ms // 1000, fs * shift_ms // 1000
    return 0 if n < win else 1 + (n - win) // shift


def test_compute_fbank_shape_and_known_frame_count():
    samples = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    feats = ef.compute_fbank(samples)
    # 1 s at 16 kHz, 25 ms window, 10 ms shift, snip_edges: 1 + (16000 - 400) // 160 = 98
    assert feats.shape == (98, 80) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    assert ef.compute_fbank(samples, n_mels=40, frame_shift=20).shape == (1 + (16000 - 400) // 320, 40)
    assert ef.compute_fbank(samples[:399]).shape[0] == 0  # shorter than one window


def test_compute_fbank_is_deterministic():
    samples = (0.1 * np.random.default_rng(1).standard_normal(8000)).astype(np.float32)
    a, b = ef.compute_fbank(samples), ef.compute_fbank(samples)
    assert np.array_equal(a, b)


def test_extract_and_merge_kaldiio_round_trip(tmp_path, corpus):
    scp, lengths = corpus
    work, out = tmp_path / "dump" / "fbank.work", tmp_path / "dump"
    rc = ef.main(["extract", "--wav_scp", str(scp), "--ark", str(work / "ark" / "feats.1.ark"),
                  "--scp", str(work / "feats.1.scp"), "--utt2num_frames", str(work / "utt2num_frames.1")])
    assert rc == 0
    # the job's scp is a kaldiio scp pointing into the work dir
    job = kaldiio.load_scp(str(work / "feats.1.scp"))
    assert set(job) == set(lengths)
    before = {k: np.array(job[k]) for k in job}
    ef.main(["merge", "--work_dir", str(work), "--nj", "1", "--out_dir", str(out), "--wav_scp", str(scp)])
    assert not work.exists()
    feats = kaldiio.load_scp(str(out / "feats.scp"))
    assert list(feats) == sorted(lengths)
    for utt, sec in lengths.items():
        mat = feats[utt]
        assert mat.shape == (expected_frames(sec), 80)
        assert np.array_equal(mat, before[utt])
        # identical to a direct computation on the file (determinism across processes/runs)
        assert np.array_equal(mat, ef.compute_fbank(sf.read(str(tmp_path / f"{utt}.wav"), dtype="float32")[0]))
    frames = dict(line.split() for line in (out / "utt2num_frames").read_text().splitlines())
    assert frames == {u: str(expected_frames(s)) for u, s in lengths.items()}
    shapes = dict(line.split() for line in (out / "feats_shape").read_text().splitlines())
    assert shapes["utt_a"] == "98,80"
    assert (out / "feats_dim").read_text().strip() == "80"
    assert (out / "feats_type").read_text().strip() == "fbank"
    assert (out / "frame_shift").read_text().strip() == "10"
    assert "--num-mel-bins=80" in (out / "fbank.conf").read_text()
    assert all(str(out / "fbank" / "feats.1.ark") in line for line in (out / "feats.scp").read_text().splitlines())


def test_parallel_jobs_merge_in_key_order(tmp_path, corpus):
    scp, lengths = corpus
    rows = scp.read_text().splitlines()
    work, out = tmp_path / "w", tmp_path / "out"
    for j, part in enumerate((rows[:2], rows[2:]), 1):
        p = tmp_path / f"wav.scp.{j}"
        p.write_text("\n".join(part) + "\n")
        ef.main(["extract", "--wav_scp", str(p), "--ark", str(work / "ark" / f"feats.{j}.ark"),
                 "--scp", str(work / f"feats.{j}.scp"), "--utt2num_frames", str(work / f"utt2num_frames.{j}")])
    ef.main(["merge", "--work_dir", str(work), "--nj", "2", "--out_dir", str(out), "--wav_scp", str(scp)])
    keys = [line.split()[0] for line in (out / "feats.scp").read_text().splitlines()]
    assert keys == sorted(lengths)
    feats = kaldiio.load_scp(str(out / "feats.scp"))
    assert feats["utt_c"].shape == (expected_frames(0.73), 80)


def test_job_list_runs_several_extractions(tmp_path, corpus):
    scp, lengths = corpus
    rows = scp.read_text().splitlines()
    lines = []
    for name, part in (("s1", rows[:1]), ("s2", rows[1:])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "wav.scp").write_text("\n".join(part) + "\n")
        w = tmp_path / name / "work"
        lines.append("\t".join([str(tmp_path / name / "wav.scp"), str(w / "ark" / "feats.1.ark"),
                                str(w / "feats.1.scp"), str(w / "utt2num_frames.1")]))
    (tmp_path / "jobs.tsv").write_text("\n".join(lines) + "\n")
    assert ef.main(["extract", "--job_list", str(tmp_path / "jobs.tsv"), "--n_mels", "40"]) == 0
    for name, n in (("s1", 1), ("s2", 2)):
        ef.main(["merge", "--work_dir", str(tmp_path / name / "work"), "--nj", "1", "--out_dir",
                 str(tmp_path / name), "--wav_scp", str(tmp_path / name / "wav.scp")])
        feats = kaldiio.load_scp(str(tmp_path / name / "feats.scp"))
        assert len(feats) == n and all(feats[k].shape[1] == 40 for k in feats)
    (tmp_path / "bad.tsv").write_text("a\tb\n")
    with pytest.raises(DataError, match="expected 4 tab-separated fields"):
        ef.main(["extract", "--job_list", str(tmp_path / "bad.tsv")])


def test_merge_refuses_incomplete_jobs(tmp_path, corpus):
    scp, _ = corpus
    work = tmp_path / "w"
    ef.main(["extract", "--wav_scp", str(scp), "--ark", str(work / "ark" / "feats.1.ark"),
             "--scp", str(work / "feats.1.scp"), "--utt2num_frames", str(work / "utt2num_frames.1")])
    with pytest.raises(DataError, match="job 2 of 2 did not finish"):
        ef.merge(work, 2, tmp_path / "out", scp)
    assert not (tmp_path / "out" / "feats.scp").exists()


def test_unreadable_audio_is_named(tmp_path, corpus):
    scp, _ = corpus
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"this is not audio")
    scp.write_text(scp.read_text() + f"utt_d {bad}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_bilevel.bin.extract_fbank", "extract", "--wav_scp", str(scp),
         "--ark", str(tmp_path / "w" / "ark" / "feats.1.ark"), "--scp", str(tmp_path / "w" / "feats.1.scp")],
        capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("ERROR: ") and "Traceback" not in proc.stderr
    assert "cannot read audio file" in proc.stderr and str(bad) in proc.stderr and "utt_d" in proc.stderr


def test_other_audio_errors(tmp_path):
    scp = tmp_path / "wav.scp"
    write_wav(tmp_path / "r8k.wav", 0.5, fs=8000)
    write_wav(tmp_path / "tiny.wav", 0.01)
    cases = {
        f"u1 {tmp_path / 'missing.wav'}": "audio file not found",
        f"u2 {tmp_path / 'r8k.wav'}": "has sample rate 8000 Hz, expected 16000 Hz",
        f"u3 {tmp_path / 'tiny.wav'}": "shorter than one 25 ms window",
        "u4 sox x.wav -t wav - |": "pipes are not supported",
    }
    for line, message in cases.items():
        scp.write_text(line + "\n")
        with pytest.raises(DataError, match=message):
            ef.extract(scp, tmp_path / "a.ark", tmp_path / "a.scp", None, 16000, 80, 25, 10, 0)
