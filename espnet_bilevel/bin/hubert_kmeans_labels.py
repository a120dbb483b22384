#!/usr/bin/env python3
"""HuBERT iteration-1 targets: k-means on MFCC frames -> pseudo-label ``text`` files for hubert_train.

Usage:
  # fit 100 clusters on 10% of the unlabeled set's utterances, label the unlabeled and the dev set
  python -m espnet_bilevel.bin.hubert_kmeans_labels \\
      --input train=dump/raw/train_unlabeled/wav.scp --input valid=dump/raw/dev/wav.scp \\
      --out_dir exp/hubert_pt/labels --n_clusters 100 --fit_portion 0.1 --seed 0

  # the same with 8 processes computing MFCCs (identical output; a 1-core process does ~300x real time)
  python -m espnet_bilevel.bin.hubert_kmeans_labels --nj 8 \\
      --input train=dump/raw/train_unlabeled/wav.scp --input valid=dump/raw/dev/wav.scp \\
      --out_dir exp/hubert_pt/labels --n_clusters 100

  # label more sets with an existing model (no fitting)
  python -m espnet_bilevel.bin.hubert_kmeans_labels --input test=dump/raw/test/wav.scp \\
      --out_dir exp/hubert_pt/labels_test --n_clusters 100 --km_model exp/hubert_pt/labels/km_model.npz

  # then pre-train on them with ESPnet (token ids = cluster ids)
  python -m espnet2.bin.hubert_train --token_type word --token_list exp/hubert_pt/labels/tokens.txt \\
      --num_classes 100 --train_data_path_and_name_and_type exp/hubert_pt/labels/train/text,text,text ...

``--input NAME=WAV_SCP`` (repeatable; a bare WAV_SCP is named after its directory). Writes, via
``<out_dir>.tmp`` renamed at the end (an existing out_dir is always complete):

  <out_dir>/<NAME>/text   <utt-id> <cluster> <cluster> ...   one cluster id per 10 ms MFCC frame
                          (1 + (samples - 400) // 160 at 16 kHz; hubert_train keeps every second one
                          with collate_fn_conf label_downsampling: 2, matching the 20 ms conv frames)
  <out_dir>/tokens.txt    0 .. n_clusters-1, <unk>, <sos/eos>  (for --token_type word)
  <out_dir>/km_model.npz  the centroids (n_clusters x 39)
  <out_dir>/kmeans.json   settings, data sizes, inertia per iteration, cluster usage, timings

Features are 13 Kaldi MFCCs + deltas + delta-deltas (39 dims, 25 ms / 10 ms), as in HuBERT's first
iteration; k-means is k-means++ then Lloyd in torch, seeded, fitted on a seeded ``--fit_portion`` of
the ``--fit_on`` set's utterances (default: the first input), subsampled to at most
``--max_fit_frames`` frames. Details: espnet_bilevel/ssl_targets/mfcc_kmeans.py.

Errors (missing wav.scp or audio, unreadable audio, pipes, wrong sample rate, multi-channel audio,
too-short utterances, fewer frames than clusters) print one ``ERROR: ...`` line naming the file
and exit 1; bad options exit 2.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet_bilevel.data.cli import run_cli
from espnet_bilevel.ssl_targets.mfcc_kmeans import FS, LabelSet, logger, make_labels


def _input(value: str) -> LabelSet:
    if "=" in value:
        name, path = value.split("=", 1)
    else:
        path = value
        name = Path(value).parent.name
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=WAV_SCP, got '{value}'")
    return LabelSet(name=name, wav_scp=Path(path))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m espnet_bilevel.bin.hubert_kmeans_labels", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", type=_input, action="append", required=True, metavar="NAME=WAV_SCP",
                   help="a set to label (repeatable); its labels go to <out_dir>/<NAME>/text")
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--n_clusters", type=int, default=100, help="number of k-means clusters [100]")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset choice and of k-means++ [0]")
    p.add_argument("--fit_on", default=None, help="NAME of the set k-means is fitted on [the first --input]")
    p.add_argument("--fit_portion", type=float, default=0.1,
                   help="fraction of that set's utterances used for fitting [0.1, as ESPnet's hubert.sh]")
    p.add_argument("--max_fit_frames", type=int, default=1_000_000,
                   help="at most this many (randomly kept) frames are used for fitting [1000000 = 2.8 h]")
    p.add_argument("--max_iter", type=int, default=100, help="Lloyd iterations at most [100]")
    p.add_argument("--fs", type=int, default=FS, help=f"expected sample rate of the audio [{FS}]")
    p.add_argument("--km_model", type=Path, default=None,
                   help="use this km_model.npz instead of fitting (it must have --n_clusters centroids)")
    p.add_argument("--nj", type=int, default=1,
                   help="processes computing features (same result for any value) [1]")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.n_clusters < 1:
        parser.error(f"--n_clusters must be >= 1, got {args.n_clusters}")
    if not 0.0 < args.fit_portion <= 1.0:
        parser.error(f"--fit_portion must be in (0, 1], got {args.fit_portion}")
    if args.max_fit_frames < 1 or args.max_iter < 1 or args.nj < 1:
        parser.error("--max_fit_frames, --max_iter and --nj must be >= 1")
    # progress goes to stderr (a handler of our own, so in-process callers see it too)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s (hubert_kmeans_labels) %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        import torch

        torch.set_num_threads(1)  # parallelism comes from --nj processes
        make_labels(args.input, args.out_dir, n_clusters=args.n_clusters, seed=args.seed, fit_on=args.fit_on,
                    fit_portion=args.fit_portion, max_fit_frames=args.max_fit_frames, max_iter=args.max_iter,
                    fs=args.fs, km_model=args.km_model, nj=args.nj)
    finally:
        logger.removeHandler(handler)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
