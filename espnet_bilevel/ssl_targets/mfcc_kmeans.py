"""HuBERT iteration-1 pseudo-labels: k-means cluster ids of MFCC frames, one per 10 ms.

What HuBERT's first iteration trains on, computed without fairseq or scikit-learn:

* **Features** (:func:`mfcc_features`): 13 Kaldi-compatible MFCCs (``torchaudio.compliance.kaldi.mfcc``
  with its defaults: 25 ms povey window, 10 ms hop, 23 mel bins, no energy, no dither,
  ``snip_edges``) plus deltas and delta-deltas (``torchaudio.functional.compute_deltas``, window 5)
  = 39 dims. Samples are used as soundfile reads them (floats in [-1, 1]), no normalisation, as in
  the original recipe.
* **Frames** (:func:`num_label_frames`): ``1 + (N - 400) // 160`` for N samples at 16 kHz. HuBERT's
  convolutional extractor (receptive field 400, stride 320) gives ``1 + (N - 400) // 320`` frames, which
  is exactly the number of labels left after ESPnet's ``collate_fn_conf.label_downsampling: 2``
  (every second label), so the pre-training configs use that setting.
* **Clustering** (:func:`kmeans_fit`): k-means++ seeding then Lloyd iterations in torch, seeded
  (same inputs + same seed = same centroids), fitted on a seeded subset of the frames
  (``fit_portion`` of the utterances, at most ``max_fit_frames`` frames). Features can be computed
  by ``nj`` processes (one 1-thread process does ~300x real time); the result does not depend on ``nj``.
* **Outputs** (:func:`make_labels`), written to ``<out_dir>.tmp`` and renamed when complete:
  ``<out_dir>/<set>/text`` (``<utt-id> <id> <id> ...``), ``<out_dir>/tokens.txt`` (``0`` .. ``k-1``,
  then ``<unk>`` and ``<sos/eos>``, so a label's token index equals its cluster id with
  ``--token_type word``), ``<out_dir>/km_model.npz`` (centroids; reusable with ``km_model=``) and
  ``<out_dir>/kmeans.json`` (settings, sizes, inertia, cluster usage).

>>> num_label_frames(16000)          # 1 s at 16 kHz
99
>>> num_label_frames(399)            # shorter than one window: no frame
0

.. note:: Bad input (missing or unreadable wav.scp or audio file, pipes, a wrong sample rate,
   multi-channel audio, an utterance shorter than one 25 ms window, fewer frames than clusters) raises
   :class:`espnet_bilevel.data.kaldi_dir.DataError` with a one-line message naming the file and line.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from espnet_bilevel.data import audio_file
from espnet_bilevel.data.kaldi_dir import (
    DataError,
    atomic_write_lines,
    fresh_tmp_dir,
    read_table_lines,
    replace_dir,
)

FS = 16000
WINDOW_MS = 25.0
HOP_MS = 10.0
NUM_CEPS = 13
FEAT_DIM = 3 * NUM_CEPS
EXTRA_TOKENS = ("<unk>", "<sos/eos>")

logger = logging.getLogger("hubert_kmeans_labels")


# ---------------------------------------------------------------------------------------------
# audio and features
# ---------------------------------------------------------------------------------------------


def num_label_frames(num_samples: int, fs: int = FS) -> int:
    """Number of 10 ms MFCC frames (= labels) of ``num_samples`` samples (Kaldi ``snip_edges``)."""
    win = int(fs * WINDOW_MS / 1000)
    hop = int(fs * HOP_MS / 1000)
    return 0 if num_samples < win else 1 + (num_samples - win) // hop


def mfcc_features(samples: np.ndarray, fs: int = FS) -> np.ndarray:
    """(num_label_frames(len(samples)), 39) float32: MFCC + deltas + delta-deltas."""
    import torch
    import torchaudio

    n = num_label_frames(len(samples), fs)
    if n == 0:
        return np.zeros((0, FEAT_DIM), dtype=np.float32)
    wave = torch.as_tensor(samples, dtype=torch.float32).reshape(1, -1)
    mfcc = torchaudio.compliance.kaldi.mfcc(
        wave, sample_frequency=float(fs), use_energy=False, num_ceps=NUM_CEPS,
        frame_length=WINDOW_MS, frame_shift=HOP_MS, dither=0.0,
    )  # (frames, 13)
    mfcc = mfcc.transpose(0, 1)  # (13, frames): compute_deltas works on the last axis
    d1 = torchaudio.functional.compute_deltas(mfcc)
    d2 = torchaudio.functional.compute_deltas(d1)
    feats = torch.cat([mfcc, d1, d2], dim=0).transpose(0, 1).contiguous()
    assert feats.shape == (n, FEAT_DIM), (feats.shape, n)
    return feats.numpy()


# ---------------------------------------------------------------------------------------------
# k-means
# ---------------------------------------------------------------------------------------------


def _sq_dists(x, centroids, c_sq):
    """Squared Euclidean distances (n, k), clamped at 0 against rounding."""
    import torch

    d = (x * x).sum(1, keepdim=True) - 2.0 * (x @ centroids.T) + c_sq[None, :]
    return torch.clamp_(d, min=0.0)


def kmeans_assign(x: np.ndarray, centroids: np.ndarray, chunk: int = 65536) -> Tuple[np.ndarray, float]:
    """Nearest centroid of every row of ``x`` and the summed squared distance (inertia)."""
    import torch

    xt = torch.as_tensor(x, dtype=torch.float32)
    ct = torch.as_tensor(centroids, dtype=torch.float32)
    c_sq = (ct * ct).sum(1)
    labels = torch.empty(len(xt), dtype=torch.long)
    inertia = 0.0
    for s in range(0, len(xt), chunk):
        d = _sq_dists(xt[s:s + chunk], ct, c_sq)
        m, idx = d.min(1)
        labels[s:s + chunk] = idx
        inertia += float(m.double().sum())
    return labels.numpy(), inertia


def _kmeans_pp_init(x, k: int, gen):
    """k-means++ seeding: each new centre drawn with probability proportional to D(x)^2."""
    import torch

    n = len(x)
    centres = torch.empty(k, x.shape[1], dtype=x.dtype)
    first = int(torch.randint(n, (1,), generator=gen))
    centres[0] = x[first]
    closest = ((x - x[first]) ** 2).sum(1)
    for j in range(1, k):
        total = float(closest.double().sum())
        if total <= 0.0:  # every point coincides with a centre: fall back to uniform draws
            idx = int(torch.randint(n, (1,), generator=gen))
        else:
            idx = int(torch.multinomial(closest.double() / total, 1, generator=gen))
        centres[j] = x[idx]
        closest = torch.minimum(closest, ((x - x[idx]) ** 2).sum(1))
    return centres


def kmeans_fit(x: np.ndarray, n_clusters: int, seed: int = 0, max_iter: int = 100, tol: float = 1e-4,
               log: Optional[Callable[[str], None]] = None) -> Tuple[np.ndarray, List[float]]:
    """Fit ``n_clusters`` centroids to the rows of ``x``: k-means++ then Lloyd.

    Deterministic for a given ``seed`` and input. An emptied cluster is re-seeded with the point
    farthest from its centroid. Stops after ``max_iter`` iterations or when the inertia improves
    by less than ``tol`` (relative). Returns ``(centroids (k, dim) float32, inertia per iteration)``.
    """
    import torch

    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"kmeans_fit: expected a 2-d array, got shape {x.shape}")
    if n_clusters < 1:
        raise DataError(f"n_clusters must be >= 1, got {n_clusters}")
    if len(x) < n_clusters:
        raise DataError(f"only {len(x)} frames to fit {n_clusters} clusters; use fewer clusters or more data")
    gen = torch.Generator().manual_seed(int(seed))
    xt = torch.as_tensor(x)
    centroids = _kmeans_pp_init(xt, n_clusters, gen)
    history: List[float] = []
    for it in range(max_iter):
        c_sq = (centroids * centroids).sum(1)
        labels = torch.empty(len(xt), dtype=torch.long)
        mins = torch.empty(len(xt), dtype=torch.float32)
        for s in range(0, len(xt), 65536):
            m, idx = _sq_dists(xt[s:s + 65536], centroids, c_sq).min(1)
            labels[s:s + 65536], mins[s:s + 65536] = idx, m
        inertia = float(mins.double().sum())
        history.append(inertia)
        sums = torch.zeros_like(centroids).index_add_(0, labels, xt)
        counts = torch.bincount(labels, minlength=n_clusters)
        new = sums / counts.clamp(min=1).unsqueeze(1).to(sums.dtype)
        empty = (counts == 0).nonzero().flatten().tolist()
        if empty:
            far = torch.argsort(mins, descending=True)[: len(empty)]
            for j, i in zip(empty, far.tolist()):
                new[j] = xt[i]
        centroids = new
        if log is not None:
            log(f"k-means iteration {it + 1}: inertia/frame {inertia / len(xt):.4f}"
                + (f", {len(empty)} empty cluster(s) re-seeded" if empty else ""))
        if not empty and len(history) > 1 and history[-2] - inertia <= tol * max(history[-2], 1e-12):
            break
    return centroids.numpy().astype(np.float32), history


# ---------------------------------------------------------------------------------------------
# the whole job: fit on one set, label every set
# ---------------------------------------------------------------------------------------------


@dataclass
class LabelSet:
    name: str
    wav_scp: Path


def _read_wav_scp(wav_scp: Path) -> List[Tuple[int, str, str]]:
    rows = read_table_lines(wav_scp)  # DataError for a missing file, empty lines, duplicate ids
    if not rows:
        raise DataError(f"{wav_scp}: no utterances")
    for lineno, utt, path in rows:
        if not path:
            raise DataError(f"{wav_scp}:{lineno}: utterance {utt} has no audio path")
    return rows


def token_list(n_clusters: int) -> List[str]:
    """Cluster ids as tokens (index = cluster id), then ESPnet's ``<unk>`` and ``<sos/eos>``."""
    return [str(i) for i in range(n_clusters)] + list(EXTRA_TOKENS)


def load_km_model(path: Path) -> np.ndarray:
    if not Path(path).is_file():
        raise DataError(f"k-means model not found: {path}")
    try:
        with np.load(path) as z:
            centroids = np.asarray(z["centroids"], dtype=np.float32)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot read k-means model {path}: {' '.join(str(exc).split())}") from None
    if centroids.ndim != 2 or centroids.shape[1] != FEAT_DIM:
        raise DataError(f"k-means model {path}: centroids have shape {centroids.shape}, expected (k, {FEAT_DIM})")
    return centroids


def _utt_features(wav_scp: Path, lineno: int, utt: str, path: str, fs: int) -> np.ndarray:
    where = f"{wav_scp}:{lineno} (utterance {utt})"
    samples = audio_file.read_mono(path, fs, where)
    if num_label_frames(len(samples), fs) == 0:
        raise DataError(f"{where}: {path} has {len(samples)} samples, shorter than one "
                        f"{WINDOW_MS:g} ms window: no frames")
    return mfcc_features(samples, fs)


def _fmt_audio(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


class _Progress:
    """Logs 'done/total' at most every ``every`` seconds (and at the end)."""

    def __init__(self, what: str, total: int, every: float = 10.0):
        self.what, self.total, self.every = what, total, every
        self.start = self.last = time.time()

    def update(self, done: int, seconds_of_audio: float) -> None:
        now = time.time()
        if done == self.total or now - self.last >= self.every:
            self.last = now
            elapsed = max(now - self.start, 1e-9)
            logger.info(f"{self.what}: {done}/{self.total} utterances ({100.0 * done / self.total:.1f}%), "
                        f"{_fmt_audio(seconds_of_audio)} of audio, {seconds_of_audio / elapsed:.0f}x real time")


def _seconds_of(n_frames: int) -> float:
    return 0.0 if n_frames == 0 else (n_frames - 1) * HOP_MS / 1000 + WINDOW_MS / 1000


def _fit_chunk(job) -> Tuple[np.ndarray, float]:
    """Worker: MFCC frames of some utterances, each frame kept with probability keep_prob
    (the random draws are seeded per utterance, so the result does not depend on --nj)."""
    wav_scp, rows, fs, keep_prob, seed = job
    parts, seconds = [], 0.0
    for index, (lineno, utt, path) in rows:
        feats = _utt_features(wav_scp, lineno, utt, path, fs)
        seconds += _seconds_of(len(feats))
        if keep_prob < 1.0:
            draw = np.random.RandomState([seed, index]).random_sample(len(feats))
            feats = feats[draw < keep_prob]
        parts.append(feats)
    frames = np.concatenate(parts) if parts else np.zeros((0, FEAT_DIM), dtype=np.float32)
    return frames, seconds


def _label_chunk(job) -> Tuple[List[str], np.ndarray, int, float]:
    """Worker: label lines of some utterances, cluster usage, frames, seconds of audio."""
    wav_scp, rows, fs, centroids = job
    lines, usage, n_frames, seconds = [], np.zeros(len(centroids), dtype=np.int64), 0, 0.0
    for lineno, utt, path in rows:
        labels, _ = kmeans_assign(_utt_features(wav_scp, lineno, utt, path, fs), centroids)
        usage += np.bincount(labels, minlength=len(centroids))
        lines.append(utt + " " + " ".join(map(str, labels.tolist())))
        n_frames += len(labels)
        seconds += _seconds_of(len(labels))
    return lines, usage, n_frames, seconds


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _run_chunks(fn, jobs, sizes, pool, progress: "_Progress", seconds_of):
    """Run ``fn`` over ``jobs`` (results in order), in-process or in ``pool``, logging progress."""
    results, done, seconds = [], 0, 0.0
    iterator = map(fn, jobs) if pool is None else pool.imap(fn, jobs)
    for size, result in zip(sizes, iterator):
        results.append(result)
        done += size
        seconds += seconds_of(result)
        progress.update(done, seconds)
    return results


def _chunks(items: list, nj: int, per_utt: bool) -> List[list]:
    """Consecutive pieces: one per utterance in-process (fine-grained progress), else ~4 per job."""
    n = len(items)
    size = 1 if per_utt else max(1, math.ceil(n / (4 * nj)))
    return [items[i:i + size] for i in range(0, n, size)]


def collect_fit_frames(rows, wav_scp: Path, fs: int, fit_portion: float, max_fit_frames: int,
                       seed: int, nj: int = 1, pool=None) -> Tuple[np.ndarray, int]:
    """Frames to fit k-means on: a seeded ``fit_portion`` of the utterances, then (if they hold more
    than ``max_fit_frames`` frames) a seeded random subset of their frames. Returns (frames, #utts)."""
    rng = random.Random(seed)
    n_utts = len(rows)
    n_fit = max(1, min(n_utts, int(math.ceil(fit_portion * n_utts))))
    chosen = sorted(rng.sample(range(n_utts), n_fit))
    # header-only pass: how many frames the chosen utterances hold, to subsample while reading
    total = 0
    for i in chosen:
        lineno, utt, path = rows[i]
        total += num_label_frames(audio_file.num_samples(path, f"{wav_scp}:{lineno} (utterance {utt})"), fs)
    keep_prob = 1.0 if total <= max_fit_frames else max_fit_frames / float(total)
    pieces = _chunks([(i, rows[i]) for i in chosen], nj, per_utt=nj <= 1)
    jobs = [(wav_scp, piece, fs, keep_prob, seed) for piece in pieces]
    progress = _Progress(f"features for k-means ({wav_scp})", len(chosen))
    results = _run_chunks(_fit_chunk, jobs, [len(p) for p in pieces], pool, progress, lambda r: r[1])
    frames = np.concatenate([r[0] for r in results])
    return frames, len(chosen)


def make_labels(
    sets: Sequence[LabelSet],
    out_dir: Path,
    n_clusters: int = 100,
    seed: int = 0,
    fit_on: Optional[str] = None,
    fit_portion: float = 0.1,
    max_fit_frames: int = 1_000_000,
    max_iter: int = 100,
    fs: int = FS,
    km_model: Optional[Path] = None,
    nj: int = 1,
) -> Dict:
    """Fit k-means on set ``fit_on`` (default: the first) and write the labels of every set.

    Everything is written to ``<out_dir>.tmp`` and renamed to ``out_dir`` at the end, so an
    existing ``out_dir`` is always complete. ``nj > 1`` computes features in that many processes
    (the result is the same as with ``nj=1``). Returns the summary also written to ``kmeans.json``.
    """
    out_dir = Path(out_dir)
    if not sets:
        raise DataError("no input sets given")
    names = [s.name for s in sets]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"input set name(s) given twice: {', '.join(dup)}")
    for n in names:
        if not n or "/" in n or n.startswith("."):
            raise DataError(f"bad input set name '{n}' (it becomes a directory name under {out_dir})")
    if not 0.0 < fit_portion <= 1.0:
        raise DataError(f"fit_portion must be in (0, 1], got {fit_portion}")
    if max_fit_frames < 1:
        raise DataError(f"max_fit_frames must be >= 1, got {max_fit_frames}")
    fit_name = fit_on or names[0]
    if fit_name not in names:
        raise DataError(f"fit_on '{fit_name}' is not one of the input sets ({', '.join(names)})")
    # read every wav.scp first: a bad list fails before any audio is processed
    rows_of = {s.name: _read_wav_scp(Path(s.wav_scp)) for s in sets}
    wav_of = {s.name: Path(s.wav_scp) for s in sets}

    pool = None
    if nj > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(nj, initializer=_worker_init)
    try:
        return _make_labels(sets, rows_of, wav_of, out_dir, n_clusters, seed, fit_name, fit_portion,
                            max_fit_frames, max_iter, fs, km_model, nj, pool)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def _make_labels(sets, rows_of, wav_of, out_dir, n_clusters, seed, fit_name, fit_portion, max_fit_frames,
                 max_iter, fs, km_model, nj, pool) -> Dict:
    names = [s.name for s in sets]
    start = time.time()
    if km_model is not None:
        centroids = load_km_model(Path(km_model))
        if len(centroids) != n_clusters:
            raise DataError(f"k-means model {km_model} has {len(centroids)} clusters, but n_clusters is {n_clusters}")
        history: List[float] = []
        fit_info = {"loaded_from": str(km_model)}
        logger.info(f"using the k-means model {km_model} ({n_clusters} clusters)")
    else:
        frames, n_fit_utts = collect_fit_frames(rows_of[fit_name], wav_of[fit_name], fs, fit_portion,
                                                max_fit_frames, seed, nj, pool)
        logger.info(f"fitting {n_clusters} clusters on {len(frames)} frames of {n_fit_utts} utterance(s) "
                    f"of '{fit_name}' (seed {seed})")
        centroids, history = kmeans_fit(frames, n_clusters, seed=seed, max_iter=max_iter, log=logger.info)
        fit_info = {"set": fit_name, "utterances": n_fit_utts, "frames": int(len(frames)),
                    "iterations": len(history), "inertia_per_frame": history[-1] / len(frames)}
    fit_seconds = time.time() - start

    tmp = fresh_tmp_dir(out_dir)
    usage = np.zeros(n_clusters, dtype=np.int64)
    per_set = {}
    for s in sets:
        rows, wav_scp = rows_of[s.name], wav_of[s.name]
        pieces = _chunks(rows, nj, per_utt=nj <= 1)
        progress = _Progress(f"labels of '{s.name}' ({wav_scp})", len(rows))
        results = _run_chunks(_label_chunk, [(wav_scp, piece, fs, centroids) for piece in pieces],
                              [len(p) for p in pieces], pool, progress, lambda r: r[3])
        lines = [line for r in results for line in r[0]]
        for r in results:
            usage += r[1]
        atomic_write_lines(tmp / s.name / "text", lines)
        per_set[s.name] = {"wav_scp": str(wav_scp), "utterances": len(rows),
                           "frames": int(sum(r[2] for r in results))}
    atomic_write_lines(tmp / "tokens.txt", token_list(n_clusters))
    np.savez(tmp / "km_model.npz", centroids=centroids)
    summary = {
        "n_clusters": n_clusters, "seed": seed, "feature": "mfcc13+delta+delta2", "dim": FEAT_DIM, "fs": fs,
        "window_ms": WINDOW_MS, "hop_ms": HOP_MS, "fit_portion": fit_portion, "max_fit_frames": max_fit_frames,
        "fit": fit_info, "inertia_history": history, "sets": per_set,
        "clusters_used": int((usage > 0).sum()), "cluster_usage": usage.tolist(),
        "seconds": {"fit": round(fit_seconds, 2), "total": round(time.time() - start, 2)},
    }
    atomic_write_lines(tmp / "kmeans.json", [json.dumps(summary, indent=1)])
    replace_dir(tmp, out_dir)
    logger.info(f"wrote {out_dir}: {', '.join(f'{n}/text' for n in names)}, tokens.txt ({n_clusters} clusters, "
                f"{summary['clusters_used']} used), km_model.npz, kmeans.json")
    return summary
