#!/usr/bin/env python3
"""Small, torch-free data helpers for bilevel_asr.sh (each sub-command is one stage's work).

Usage:
  data_tools.py speed_perturb --in data/train --out data/train_sp --factors "0.9 1.0 1.1" [--fs 16000] [--nj 2]
  data_tools.py format --in data/train --out dump/raw/org/train [--fs 16000] [--audio_format keep|wav|flac]
                       [--no_text] [--nj 2]
  data_tools.py filter --in dump/raw/org/train --out dump/raw/train --min_sec 0.1 --max_sec 20 [--no_text]
                       (feats.scp, utt2num_frames, feats_shape of an fbank dir are filtered alike)
  data_tools.py split --scp dump/raw/test/wav.scp --nj 4 --out_dir exp/x/decode/test/keys
  data_tools.py bpe --text data/train/text --out_dir data/token_list/bpe_unigram30 --nbpe 30 [--bpemode unigram]
  data_tools.py vocab_suffix --in exp/asr_stats/train/text_shape --token_list tokens.txt --out text_shape.char
  data_tools.py aggregate_stats --input_dir logdir/stats.1 --input_dir logdir/stats.2 --output_dir exp/asr_stats
  data_tools.py combine --out data/train_unlab [--drop_text] data/train_clean_360 data/train_other_500
  data_tools.py subset_hours --in data/train_clean_100 --out data/train_clean_100_10h --hours 10 [--seed 0]
  data_tools.py count --scp dump/raw/test/wav.scp

Every output directory is written into a temporary directory and renamed into place, so an
interrupted call never leaves a directory that looks complete. Errors print "ERROR: ..." and exit 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from espnet_bilevel.data.cli import run_cli
from espnet_bilevel.data.kaldi_dir import (
    DataDir,
    DataError,
    atomic_write_lines,
    fresh_tmp_dir,
    kaldi_sort_key,
    read_data_dir,
    read_table,
    read_table_lines,
    replace_dir,
    split_scp,
    write_data_dir,
    write_table,
)


def _sorted(d):
    return sorted(d, key=kaldi_sort_key)


def _run_all(jobs, nj):
    """Run (argv, description) jobs with nj threads; the first failure is reported as DataError."""
    def one(job):
        argv, what = job
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise DataError(f"{what}: {' '.join(argv[:2])} ... failed: {proc.stderr.strip()[-500:]}")

    with ThreadPoolExecutor(max(1, nj)) as ex:
        list(ex.map(one, jobs))


# ------------------------------------------------------------------------------------------ speed


def speed_perturb(src: Path, dst: Path, factors, fs: int, nj: int) -> None:
    """Materialize speed-perturbed copies (sox 'speed' + 'rate') of every utterance.

    Factor 1.0 keeps the original entries and ids; other factors prefix utterance and speaker
    ids with ``sp<f>-`` and write wavs under ``<dst>/wav/sp<f>/``.
    """
    if shutil.which("sox") is None:
        raise DataError("sox is not installed (apt-get install sox); needed for --speed_perturb_factors")
    data = read_data_dir(src)
    tmp = fresh_tmp_dir(dst)
    out = DataDir(text={}, utt2spk={})
    jobs = []
    wav_root = dst.resolve() / "wav"  # final location (the tmp dir is renamed to dst); absolute paths
    for f in factors:
        fval = float(f)
        if fval <= 0:
            raise DataError(f"speed perturbation factor must be > 0, got {f}")
        if abs(fval - 1.0) < 1e-9:
            for utt in data.utt2spk:
                wav = data.wav_scp[data.segments[utt][0]] if data.segments else data.wav_scp[utt]
                if data.segments:
                    # materialize the segment so every entry of the perturbed dir is a plain file
                    reco, start, end = data.segments[utt]
                    target = f"sp1.0/{utt}.wav"
                    jobs.append((["sox", wav, str(tmp / "wav" / target), "trim", str(start), f"={end}"], utt))
                    out.wav_scp[utt] = str(wav_root / target)
                else:
                    out.wav_scp[utt] = wav
                out.text[utt] = data.text[utt]
                out.utt2spk[utt] = data.utt2spk[utt]
            continue
        tag = f"sp{f}"
        (tmp / "wav" / tag).mkdir(parents=True, exist_ok=True)
        for utt in data.utt2spk:
            new = f"{tag}-{utt}"
            target = f"{tag}/{new}.wav"
            if data.segments:
                reco, start, end = data.segments[utt]
                argv = ["sox", data.wav_scp[reco], "-b", "16", str(tmp / "wav" / target),
                        "trim", str(start), f"={end}", "speed", str(f), "rate", str(fs)]
            else:
                argv = ["sox", data.wav_scp[utt], "-b", "16", str(tmp / "wav" / target), "speed", str(f), "rate", str(fs)]
            jobs.append((argv, new))
            out.wav_scp[new] = str(wav_root / target)
            out.text[new] = data.text[utt]
            out.utt2spk[new] = f"{tag}-{data.utt2spk[utt]}"
    (tmp / "wav" / "sp1.0").mkdir(parents=True, exist_ok=True)
    _run_all(jobs, nj)
    data_tmp = write_data_dir(tmp / "tables", out)
    for name in os.listdir(data_tmp):
        os.replace(data_tmp / name, tmp / name)
    data_tmp.rmdir()
    replace_dir(tmp, dst)
    print(f"speed_perturb: {len(data.utt2spk)} -> {len(out.utt2spk)} utterances ({' '.join(factors)}) in {dst}",
          file=sys.stderr)


# ------------------------------------------------------------------------------------------ format


def format_dir(src: Path, dst: Path, fs: int, audio_format: str, require_text: bool, nj: int) -> None:
    """Copy a data dir to dump/: audio stays in place unless it must be cut (segments),
    resampled (other rate), mixed down (several channels) or re-encoded (--audio_format wav|flac).
    Writes utt2num_samples, feats_type and audio_format next to the tables."""
    import soundfile as sf

    data = read_data_dir(src, require_text=require_text)
    if require_text:
        empty = [u for u, t in data.text.items() if not t.strip()]
        if len(empty) == len(data.text):
            raise DataError(f"{src}/text: every transcript is empty")
    tmp = fresh_tmp_dir(dst)
    out = DataDir(text=dict(data.text) if data.text is not None else None, utt2spk=dict(data.utt2spk))
    num_samples = {}
    converted = 0
    infos = {}

    def info(path):
        if path not in infos:
            if not Path(path).is_file():
                raise DataError(f"{src}/wav.scp: audio file not found: {path}")
            try:
                infos[path] = sf.info(path)
            except Exception as exc:  # noqa: BLE001 - soundfile raises several types
                raise DataError(f"{src}/wav.scp: cannot read audio {path}: {exc}")
        return infos[path]

    jobs = []
    ext = "flac" if audio_format == "flac" else "wav"
    for utt in _sorted(data.utt2spk):
        if data.segments:
            reco, start, end = data.segments[utt]
            path = data.wav_scp[reco]
        else:
            path, start, end = data.wav_scp[utt], None, None
        i = info(path)
        needs = start is not None or i.samplerate != fs or i.channels != 1 or audio_format in ("wav", "flac")
        if not needs:
            out.wav_scp[utt] = path
            num_samples[utt] = i.frames
            continue
        target = dst.resolve() / "data" / f"{utt}.{ext}"
        argv = ["sox", path, "-b", "16", str(tmp / "data" / f"{utt}.{ext}")]
        if start is not None:
            argv += ["trim", f"{start}", f"={end}"]
            seconds = end - start
        else:
            seconds = i.frames / i.samplerate
        argv += ["channels", "1", "rate", str(fs)]
        jobs.append((argv, utt))
        out.wav_scp[utt] = str(target)
        num_samples[utt] = int(round(seconds * fs))
        converted += 1
    if jobs:
        if shutil.which("sox") is None:
            raise DataError("sox is not installed (apt-get install sox); needed to cut/resample audio")
        (tmp / "data").mkdir(parents=True, exist_ok=True)
        _run_all(jobs, nj)
        for utt in num_samples:  # exact lengths of what sox wrote
            p = tmp / "data" / Path(out.wav_scp[utt]).name
            if p.is_file():
                num_samples[utt] = sf.info(str(p)).frames
    tables = write_data_dir(tmp / "tables", out)
    for name in os.listdir(tables):
        os.replace(tables / name, tmp / name)
    tables.rmdir()
    write_table(tmp / "utt2num_samples", {u: str(n) for u, n in num_samples.items()})
    atomic_write_lines(tmp / "feats_type", ["raw"])
    atomic_write_lines(tmp / "audio_format", [audio_format if converted else "keep"])
    atomic_write_lines(tmp / "fs", [str(fs)])
    replace_dir(tmp, dst)
    print(f"format: {src} -> {dst}: {len(out.utt2spk)} utterances, {converted} written as {ext}",
          file=sys.stderr)


# ------------------------------------------------------------------------------------------ filter


def filter_dir(src: Path, dst: Path, min_sec: float, max_sec: float, require_text: bool) -> None:
    data = read_data_dir(src, require_text=require_text)
    if not (src / "utt2num_samples").is_file():
        raise DataError(f"{src}/utt2num_samples is missing (written by stage 3)")
    nums = read_table(src / "utt2num_samples")
    fs = 16000
    fs_file = src / "fs"
    if fs_file.is_file():
        fs = int(fs_file.read_text().split()[0])
    keep, dropped = [], {"short": 0, "long": 0, "empty": 0}
    for utt in data.utt2spk:
        sec = int(nums[utt]) / fs
        if sec < min_sec:
            dropped["short"] += 1
        elif sec > max_sec:
            dropped["long"] += 1
        elif require_text and not data.text.get(utt, "").strip():
            dropped["empty"] += 1
        else:
            keep.append(utt)
    if not keep:
        raise DataError(f"{src}: no utterance left after filtering to [{min_sec}, {max_sec}] s ({dropped})")
    keep_set = set(keep)
    tmp = fresh_tmp_dir(dst)
    out = DataDir(
        wav_scp={u: v for u, v in data.wav_scp.items() if u in keep_set},
        text={u: v for u, v in data.text.items() if u in keep_set} if data.text is not None else None,
        utt2spk={u: v for u, v in data.utt2spk.items() if u in keep_set},
    )
    tables = write_data_dir(tmp / "tables", out)
    for name in os.listdir(tables):
        os.replace(tables / name, tmp / name)
    tables.rmdir()
    write_table(tmp / "utt2num_samples", {u: nums[u] for u in keep})
    # extracted features (--feats_type fbank): the tables follow the utterances, the arks stay put
    for name in ("feats.scp", "utt2num_frames", "feats_shape"):
        if (src / name).is_file():
            table = read_table(src / name)
            missing = [u for u in keep if u not in table]
            if missing:
                raise DataError(f"{src}/{name}: no entry for {len(missing)} utterance(s), e.g. {missing[0]}")
            write_table(tmp / name, {u: table[u] for u in keep})
    for name in ("feats_type", "audio_format", "fs", "feats_dim", "frame_shift", "fbank.conf"):
        if (src / name).is_file():
            shutil.copy(src / name, tmp / name)
    replace_dir(tmp, dst)
    print(f"filter: {src} -> {dst}: kept {len(keep)}, dropped {dropped}", file=sys.stderr)


# ------------------------------------------------------------------------------------------ misc


def bpe(text: Path, out_dir: Path, nbpe: int, bpemode: str) -> None:
    import sentencepiece as spm

    if not text.is_file():
        raise DataError(f"{text}: BPE training text not found")
    tmp = fresh_tmp_dir(out_dir)
    sentences = [v for _, _, v in read_table_lines(text)]
    (tmp / "train.txt").write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(tmp / "train.txt"), vocab_size=nbpe, model_type=bpemode, model_prefix=str(tmp / "bpe"),
        character_coverage=1.0, input_sentence_size=100000000, hard_vocab_limit=False,
        minloglevel=2,
    )
    pieces = []
    for line in (tmp / "bpe.vocab").read_text(encoding="utf-8").splitlines():
        piece = line.split("\t")[0]
        if piece not in ("<unk>", "<s>", "</s>"):
            pieces.append(piece)
    atomic_write_lines(tmp / "tokens.txt", ["<blank>", "<unk>"] + pieces + ["<sos/eos>"])
    os.unlink(tmp / "train.txt")
    replace_dir(tmp, out_dir)
    print(f"bpe: {len(pieces) + 3} tokens -> {out_dir}/tokens.txt", file=sys.stderr)


def aggregate_stats(inputs, out: Path) -> None:
    """Merge per-job collect_stats dirs (<job>/{train,valid}/*_shape, *_stats.npz) into ``out``.

    Shape files are concatenated in key order; ``*_stats.npz`` arrays (count, sum, sum_square)
    are summed, which is exactly what global MVN needs.
    """
    import numpy as np

    if not inputs:
        raise DataError("aggregate_stats: no --input_dir given")
    tmp = fresh_tmp_dir(out)
    for mode in ("train", "valid"):
        first = inputs[0] / mode
        if not first.is_dir():
            continue
        (tmp / mode).mkdir()
        for name in sorted(os.listdir(first)):
            if name.endswith("_shape"):
                rows = []
                for d in inputs:
                    rows += [(k, v) for _, k, v in read_table_lines(d / mode / name)]
                rows.sort(key=lambda r: kaldi_sort_key(r[0]))
                atomic_write_lines(tmp / mode / name, [f"{k} {v}" for k, v in rows])
            elif name.endswith("_stats.npz"):
                total = None
                for d in inputs:
                    with np.load(d / mode / name) as stats:
                        if total is None:
                            total = {k: stats[k].copy() for k in stats.files}
                        else:
                            for k in stats.files:
                                total[k] = total[k] + stats[k]
                np.savez(tmp / mode / name, **total)
            elif name in ("batch_keys", "stats_keys"):
                shutil.copy(first / name, tmp / mode / name)
    replace_dir(tmp, out)


def combine(dst: Path, srcs, drop_text: bool) -> None:
    """Concatenate data dirs (ids must be unique); --drop_text makes the result unlabeled."""
    from espnet_bilevel.data.kaldi_dir import combine_data_dirs

    tmp = Path(str(dst) + ".combine")
    if tmp.exists():
        shutil.rmtree(tmp)
    combine_data_dirs(tmp, srcs)
    if drop_text and (tmp / "text").exists():
        os.unlink(tmp / "text")
    replace_dir(tmp, dst)
    print(f"combine: {' + '.join(map(str, srcs))} -> {dst}{' (text dropped)' if drop_text else ''}", file=sys.stderr)


def subset_hours(src: Path, dst: Path, hours: float, seed: int) -> None:
    """Keep whole speakers, in a seeded random order, until ``hours`` of audio are reached."""
    import random

    import soundfile as sf

    data = read_data_dir(src, require_text=False)
    seconds = {}
    for utt in data.utt2spk:
        if data.segments:
            _, start, end = data.segments[utt]
            seconds[utt] = end - start
        else:
            seconds[utt] = sf.info(data.wav_scp[utt]).duration
    by_spk = {}
    for utt, spk in data.utt2spk.items():
        by_spk.setdefault(spk, []).append(utt)
    speakers = sorted(by_spk)
    random.Random(seed).shuffle(speakers)
    total = sum(seconds.values())
    if hours * 3600 >= total:
        raise DataError(f"{src}: --labeled_subset_hours {hours} is not below the total {total / 3600:.2f} h")
    keep, acc = [], 0.0
    for spk in speakers:
        if acc >= hours * 3600:
            break
        keep += by_spk[spk]
        acc += sum(seconds[u] for u in by_spk[spk])
    from espnet_bilevel.data.kaldi_dir import subset_data_dir

    subset_data_dir(src, dst, keep)
    print(f"subset_hours: {src} -> {dst}: {len(keep)} utterances, {acc / 3600:.2f} h", file=sys.stderr)


def vocab_suffix(src: Path, token_list: Path, out: Path) -> None:
    n = sum(1 for line in open(token_list, encoding="utf-8") if line.strip())
    lines = [f"{k} {v},{n}" for _, k, v in read_table_lines(src)]
    atomic_write_lines(out, lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed_perturb")
    s.add_argument("--in", dest="src", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--factors", required=True)
    s.add_argument("--fs", type=int, default=16000)
    s.add_argument("--nj", type=int, default=2)
    s = sub.add_parser("format")
    s.add_argument("--in", dest="src", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--fs", type=int, default=16000)
    s.add_argument("--audio_format", choices=["keep", "wav", "flac"], default="keep")
    s.add_argument("--no_text", action="store_true")
    s.add_argument("--nj", type=int, default=2)
    s = sub.add_parser("filter")
    s.add_argument("--in", dest="src", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--min_sec", type=float, default=0.1)
    s.add_argument("--max_sec", type=float, default=20.0)
    s.add_argument("--no_text", action="store_true")
    s = sub.add_parser("split")
    s.add_argument("--scp", type=Path, required=True)
    s.add_argument("--nj", type=int, required=True)
    s.add_argument("--out_dir", type=Path, required=True)
    s = sub.add_parser("bpe")
    s.add_argument("--text", type=Path, required=True)
    s.add_argument("--out_dir", type=Path, required=True)
    s.add_argument("--nbpe", type=int, default=30)
    s.add_argument("--bpemode", choices=["unigram", "bpe"], default="unigram")
    s = sub.add_parser("vocab_suffix")
    s.add_argument("--in", dest="src", type=Path, required=True)
    s.add_argument("--token_list", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("aggregate_stats")
    s.add_argument("--input_dir", type=Path, action="append", required=True)
    s.add_argument("--output_dir", type=Path, required=True)
    s = sub.add_parser("combine")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--drop_text", action="store_true")
    s.add_argument("srcs", type=Path, nargs="+")
    s = sub.add_parser("subset_hours")
    s.add_argument("--in", dest="src", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--hours", type=float, required=True)
    s.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("count")
    s.add_argument("--scp", type=Path, required=True)
    a = p.parse_args(argv)
    if a.cmd == "speed_perturb":
        speed_perturb(a.src, a.out, a.factors.split(), a.fs, a.nj)
    elif a.cmd == "format":
        format_dir(a.src, a.out, a.fs, a.audio_format, not a.no_text, a.nj)
    elif a.cmd == "filter":
        filter_dir(a.src, a.out, a.min_sec, a.max_sec, not a.no_text)
    elif a.cmd == "split":
        n = min(a.nj, len(read_table_lines(a.scp)))
        tmp = fresh_tmp_dir(a.out_dir)
        split_scp(a.scp, n, tmp)
        replace_dir(tmp, a.out_dir)
        print(n)
    elif a.cmd == "bpe":
        bpe(a.text, a.out_dir, a.nbpe, a.bpemode)
    elif a.cmd == "vocab_suffix":
        vocab_suffix(a.src, a.token_list, a.out)
    elif a.cmd == "aggregate_stats":
        aggregate_stats(a.input_dir, a.output_dir)
    elif a.cmd == "combine":
        combine(a.out, a.srcs, a.drop_text)
    elif a.cmd == "subset_hours":
        subset_hours(a.src, a.out, a.hours, a.seed)
    elif a.cmd == "count":
        print(len(read_table_lines(a.scp)))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
