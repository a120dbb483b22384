#!/usr/bin/env python3
"""Log-mel filterbank extraction for ``bilevel_asr.sh --feats_type fbank`` (stage 3), on CPU.

Usage:
  # one job: the utterances of one wav.scp (split) -> one Kaldi ark + scp (written by kaldiio)
  python -m espnet_bilevel.bin.extract_fbank extract --wav_scp split/wav.scp.1 \\
      --ark work/ark/feats.1.ark --scp work/feats.1.scp [--utt2num_frames work/utt2num_frames.1] \\
      [--fs 16000] [--n_mels 80] [--frame_length 25] [--frame_shift 10] [--dither 0]

  # several extractions in one process (saves the ~3 s torch import per set): one line per
  # extraction, tab-separated: <wav.scp> <ark> <scp> <utt2num_frames>
  python -m espnet_bilevel.bin.extract_fbank extract --job_list jobs.1.tsv [fbank options]

  # after all jobs: merge them into a data dir (feats.scp, utt2num_frames, feats_shape, feats_dim,
  # feats_type, frame_shift, fbank.conf; the arks are moved to <out_dir>/fbank/)
  python -m espnet_bilevel.bin.extract_fbank merge --work_dir work --nj 2 --out_dir dump/fbank/org/train \\
      [--wav_scp dump/fbank/org/train/wav.scp]

Features: Kaldi-compatible log-mel filterbanks computed with ``torchaudio.compliance.kaldi.fbank``
(the same definition as Kaldi's ``compute-fbank-feats``, which ESPnet's asr.sh uses for
``--feats_type fbank``): povey window, pre-emphasis 0.97, DC removal, FFT size = next power of
two of the window, mel bins between 20 Hz and Nyquist, ``snip_edges`` (a signal of N samples gives
``1 + (N - win) // shift`` frames, 98 frames for 1 s at 16 kHz with 25/10 ms). Samples are scaled
to the int16 range as Kaldi reads them. ``--dither 0`` (the default here, Kaldi's is 1) makes the
output deterministic. Everything runs on CPU with one thread per job; the script is parallelised
by running one ``extract`` per split (bilevel_asr.sh does this with ``${train_cmd} JOB=1:nj``; each
job's ``--job_list`` holds its split of every set that stage 3 extracts).

Atomicity: ``extract`` writes its ark/scp under the job's work dir; ``merge`` checks that every
job finished and that every utterance of ``--wav_scp`` has features, rewrites the ark paths to the
final ``<out_dir>/fbank/`` (absolute paths), moves the arks there and writes ``feats.scp`` last,
so a directory without ``feats.scp`` is never a complete-looking result.

Errors (unreadable audio, wrong sample rate, an utterance shorter than one window, missing job
outputs) print ``ERROR: ...`` naming the file and exit 1.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional

from espnet_bilevel.data.audio_file import read_mono
from espnet_bilevel.data.cli import run_cli
from espnet_bilevel.data.kaldi_dir import (
    DataError,
    atomic_write_lines,
    kaldi_sort_key,
    read_table_lines,
    replace_dir,
)

# why a pipe fails here: stage 3 writes piped audio (e.g. LibriSpeech flac via sox) to files first
PIPE_NOTE = " by the fbank extractor (stage 3 materializes them first)"

DEFAULTS = dict(fs=16000, n_mels=80, frame_length=25.0, frame_shift=10.0, dither=0.0)


def compute_fbank(samples, fs: int = 16000, n_mels: int = 80, frame_length: float = 25.0,
                  frame_shift: float = 10.0, dither: float = 0.0):
    """(num_frames, n_mels) float32 numpy array of Kaldi-style log-mel filterbanks."""
    import torch
    from torchaudio.compliance import kaldi

    import numpy as np

    wave = torch.as_tensor(samples, dtype=torch.float32).reshape(1, -1) * 32768.0
    if wave.shape[1] < int(fs * frame_length * 0.001):  # shorter than one window: no frames
        return np.zeros((0, int(n_mels)), dtype=np.float32)
    feats = kaldi.fbank(
        wave, sample_frequency=float(fs), num_mel_bins=int(n_mels), frame_length=float(frame_length),
        frame_shift=float(frame_shift), dither=float(dither), energy_floor=0.0,
    )
    return feats.numpy()


def kaldi_conf(fs, n_mels, frame_length, frame_shift, dither) -> List[str]:
    """The same settings in Kaldi's conf/fbank.conf syntax (for people comparing with Kaldi)."""
    return [f"--sample-frequency={fs}", f"--num-mel-bins={n_mels}", f"--frame-length={frame_length:g}",
            f"--frame-shift={frame_shift:g}", f"--dither={dither:g}", "--energy-floor=0"]


def extract(wav_scp: Path, ark: Path, scp: Path, utt2num_frames: Optional[Path], fs: int, n_mels: int,
            frame_length: float, frame_shift: float, dither: float) -> int:
    import kaldiio
    import torch

    torch.set_num_threads(1)
    rows = read_table_lines(wav_scp)
    if not rows:
        raise DataError(f"{wav_scp}: no utterances")
    ark, scp = ark.resolve(), scp.resolve()
    ark.parent.mkdir(parents=True, exist_ok=True)
    scp.parent.mkdir(parents=True, exist_ok=True)
    frames: Dict[str, int] = {}
    with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer:
        for lineno, utt, path in rows:
            where = f"{wav_scp}:{lineno} (utterance {utt})"
            samples = read_mono(path, fs, where, pipe_note=PIPE_NOTE, fs_option="--fs")
            feats = compute_fbank(samples, fs, n_mels, frame_length, frame_shift, dither)
            if feats.shape[0] == 0:
                raise DataError(f"{where}: {path} has {samples.shape[0]} samples, shorter than one "
                                f"{frame_length:g} ms window: no frames")
            writer(utt, feats)
            frames[utt] = int(feats.shape[0])
    if utt2num_frames is not None:
        atomic_write_lines(utt2num_frames, [f"{u} {n}" for u, n in frames.items()])
    info = dict(dim=int(n_mels), num_utts=len(frames), fs=fs, n_mels=n_mels, frame_length=frame_length,
                frame_shift=frame_shift, dither=dither)
    atomic_write_lines(scp.with_suffix(".info.json"), [json.dumps(info)])
    print(f"extract_fbank: {len(frames)} utterances, {sum(frames.values())} frames x {n_mels} -> {ark}",
          file=sys.stderr)
    return len(frames)


def merge(work_dir: Path, nj: int, out_dir: Path, wav_scp: Optional[Path]) -> int:
    """Merge the ``nj`` jobs under ``work_dir`` (feats.J.scp, feats.J.info.json, ark/feats.J.ark,
    utt2num_frames.J) into ``out_dir``."""
    work_dir, out_dir = work_dir.resolve(), out_dir.resolve()
    ark_tmp, ark_final = work_dir / "ark", out_dir / "fbank"
    scp_rows, frames, info = [], {}, None
    for j in range(1, nj + 1):
        scp = work_dir / f"feats.{j}.scp"
        meta = work_dir / f"feats.{j}.info.json"
        if not scp.is_file() or not meta.is_file():
            raise DataError(f"{work_dir}: job {j} of {nj} did not finish ({scp.name} or {meta.name} missing)")
        job_info = json.loads(meta.read_text())
        if info is None:
            info = job_info
        elif {k: v for k, v in job_info.items() if k != "num_utts"} != \
                {k: v for k, v in info.items() if k != "num_utts"}:
            raise DataError(f"{meta}: settings differ from job 1: {job_info} vs {info}")
        for _, utt, value in read_table_lines(scp):
            path, sep, offset = value.rpartition(":")
            if not sep or not path.startswith(str(ark_tmp) + os.sep):
                raise DataError(f"{scp}: unexpected ark path for {utt}: {value} (expected under {ark_tmp})")
            scp_rows.append((utt, f"{ark_final}{path[len(str(ark_tmp)):]}:{offset}"))
        n_file = work_dir / f"utt2num_frames.{j}"
        if not n_file.is_file():
            raise DataError(f"{work_dir}: job {j} of {nj} did not finish ({n_file.name} missing)")
        for _, utt, n in read_table_lines(n_file):
            frames[utt] = n
    keys = [u for u, _ in scp_rows]
    if len(set(keys)) != len(keys):
        raise DataError(f"{work_dir}: an utterance was extracted twice")
    if wav_scp is not None:
        expected = {k for _, k, _ in read_table_lines(wav_scp)}
        missing = sorted(expected - set(keys), key=kaldi_sort_key)
        if missing:
            raise DataError(f"{work_dir}: {len(missing)} utterance(s) of {wav_scp} have no features, "
                            f"e.g. {missing[0]}")
    scp_rows.sort(key=lambda r: kaldi_sort_key(r[0]))
    dim = int(info["dim"])
    out_dir.mkdir(parents=True, exist_ok=True)
    replace_dir(ark_tmp, ark_final)
    atomic_write_lines(out_dir / "utt2num_frames", [f"{u} {frames[u]}" for u, _ in scp_rows])
    atomic_write_lines(out_dir / "feats_shape", [f"{u} {frames[u]},{dim}" for u, _ in scp_rows])
    atomic_write_lines(out_dir / "feats_dim", [str(dim)])
    atomic_write_lines(out_dir / "frame_shift", [f"{info['frame_shift']:g}"])
    atomic_write_lines(out_dir / "fbank.conf", kaldi_conf(info["fs"], info["n_mels"], info["frame_length"],
                                                          info["frame_shift"], info["dither"]))
    atomic_write_lines(out_dir / "feats_type", ["fbank"])
    atomic_write_lines(out_dir / "feats.scp", [f"{u} {v}" for u, v in scp_rows])  # last: marks completion
    shutil.rmtree(work_dir)
    print(f"extract_fbank: merged {nj} job(s): {len(scp_rows)} utterances x {dim} -> {out_dir}/feats.scp",
          file=sys.stderr)
    return len(scp_rows)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("extract", help="features of one wav.scp into one ark/scp")
    s.add_argument("--wav_scp", type=Path, help="utterances to extract (or use --job_list)")
    s.add_argument("--ark", type=Path, help="output ark (kaldiio)")
    s.add_argument("--scp", type=Path, help="output scp (kaldiio)")
    s.add_argument("--utt2num_frames", type=Path, default=None)
    s.add_argument("--job_list", type=Path, default=None,
                   help="tab-separated lines <wav.scp> <ark> <scp> <utt2num_frames>, done in order")
    s.add_argument("--fs", type=int, default=DEFAULTS["fs"], help="expected sampling rate in Hz [16000]")
    s.add_argument("--n_mels", type=int, default=DEFAULTS["n_mels"], help="mel bins [80]")
    s.add_argument("--frame_length", type=float, default=DEFAULTS["frame_length"], help="window in ms [25]")
    s.add_argument("--frame_shift", type=float, default=DEFAULTS["frame_shift"], help="shift in ms [10]")
    s.add_argument("--dither", type=float, default=DEFAULTS["dither"], help="dither (0 = deterministic) [0]")
    s = sub.add_parser("merge", help="merge the jobs of a work dir into a data dir")
    s.add_argument("--work_dir", type=Path, required=True)
    s.add_argument("--nj", type=int, required=True)
    s.add_argument("--out_dir", type=Path, required=True)
    s.add_argument("--wav_scp", type=Path, default=None, help="check that every utterance has features")
    a = p.parse_args(argv)
    if a.cmd == "extract":
        if a.n_mels < 1 or a.frame_length <= 0 or a.frame_shift <= 0 or a.fs <= 0:
            raise DataError("--fs, --n_mels, --frame_length and --frame_shift must be positive")
        if a.job_list is not None:
            if a.wav_scp or a.ark or a.scp or a.utt2num_frames:
                raise DataError("give either --job_list or --wav_scp/--ark/--scp/--utt2num_frames")
            jobs = [(lineno, v.split("\t")) for lineno, v in
                    enumerate(a.job_list.read_text(encoding="utf-8").splitlines(), 1) if v.strip()]
            for lineno, fields in jobs:
                if len(fields) != 4:
                    raise DataError(f"{a.job_list}:{lineno}: expected 4 tab-separated fields, got {len(fields)}")
        elif a.wav_scp is None or a.ark is None or a.scp is None:
            raise DataError("extract needs --wav_scp, --ark and --scp (or --job_list)")
        else:
            jobs = [(0, [str(a.wav_scp), str(a.ark), str(a.scp), a.utt2num_frames])]
        for _, (wav_scp, ark, scp, n_file) in jobs:
            extract(Path(wav_scp), Path(ark), Path(scp), Path(n_file) if n_file else None, a.fs, a.n_mels,
                    a.frame_length, a.frame_shift, a.dither)
    else:
        if a.nj < 1:
            raise DataError("--nj must be >= 1")
        merge(a.work_dir, a.nj, a.out_dir, a.wav_scp)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
