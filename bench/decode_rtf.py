#!/usr/bin/env python3
"""Decoding real-time factor (RTF) of an exported model on a data dir, on this CPU: ESPnet's
per-utterance ``Speech2Text`` (the way recipe stage 12 decodes) with the CTC greedy and the CTC
beam-10 configs, and batched CTC greedy (best-path) decoding.

Usage:
  tools/venv/bin/python bench/decode_rtf.py \\
      --model_dir egs2/mini_synth/asr1/exp/asr_bljust_raw_char/export \\
      --data_dir egs2/mini_synth/asr1/dump/raw/test --repeats 3
  tools/venv/bin/python bench/decode_rtf.py \\
      --model_dir egs2/mini_synth/asr1/exp/asr_bljust_raw_char/export \\
      --data_dir egs2/mini_synth/asr1/dump/raw/test --repeats 3 --threads 1   # as stage 12 (path.sh)
  tools/venv/bin/python bench/decode_rtf.py \\
      --model_dir egs2/mini_synth/asr1/exp/asr_bljust_raw_char/export \\
      --data_dir egs2/mini_synth/asr1/dump/raw/test --repeats 3 --threads 1 --jobs 2   # both cores, as stage 12
  tools/venv/bin/python bench/decode_rtf.py --model_dir <exp>/export --data_dir <dump>/test \\
      --modes ctc_bs1 batched --batch_size 60

``--model_dir`` is what stage 12 writes (``export/config.yaml`` + ``export/model.pth``). Relative
paths inside its config (``normalize_conf.stats_file``) are resolved as the recipe does, from the
recipe dir: the first ancestor of ``--model_dir`` where they exist (or ``--recipe_dir``).

``--threads`` sets torch.set_num_threads (default 2); stage 12 decodes with OMP_NUM_THREADS=1 in
--inference_nj processes. With other jobs on the CPU, a second thread mostly waits for a core.
``--jobs N`` decodes the data dir as stage 12 does with --inference_nj N: N processes side by side,
each a contiguous part of the utterances (spawned, each with its own import and model load, not
timed); a pass is timed from a common start (a barrier) to the end of the slowest job, so RTF is
the wall time of decoding the whole set on N cores over its audio duration.

RTF = decoding wall time / audio duration, per pass over the whole data dir: the median over
``--repeats`` passes, after a warm-up of ``--warmup`` utterances; modes are interleaved in every
round so machine-load drift hits all of them alike; the process CPU time (all threads) is printed
too. Not included (printed separately): the ESPnet import, model loading, reading the audio. Modes:

  s2t_greedy   Speech2Text per utterance, conf/decode_ctc_greedy.yaml (beam 1, ctc_weight 1.0)
  s2t_beam10   Speech2Text per utterance, conf/decode_ctc_beam10.yaml (CTC prefix beam search)
  ctc_bs1      CTC best path per utterance: model.encode -> ctc.argmax -> collapse -> drop blanks
               (espnet_bilevel.decoding.ctc_best_path, what stage 12 runs with
               --inference_config conf/decode_ctc_bestpath.yaml)
  batched      the same in length-sorted padded batches of --batch_size utterances

ESPnet 202511 has no batched decoding: ``asr_inference`` raises NotImplementedError("batch
decoding is not implemented") for ``--batch_size`` > 1, and ``Speech2Text.__call__`` takes one
utterance. Its "greedy" (beam 1 with the CTC prefix scorer) is a prefix search, one step per output
token, not the best path. And a padded batch changes the encoder output of the shorter utterances:
the conv2d subsampling derives their lengths from the padded mask (1-2 frames more than alone),
and the conformer convolution module does not mask padding. So the script prints how many
hypotheses of ctc_bs1 and of batched are identical to s2t_greedy's, and batched to ctc_bs1's,
and, when the data dir has a ``text`` file, every mode's WER and CER on it (our scorer,
``espnet_bilevel.data.scoring``; CER counts spaces, as stage 13): how much accuracy the prefix
search with one beam costs against the best path.
"""
import argparse
import os
import statistics
import sys
import time
from itertools import groupby
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "egs2/mini_synth/asr1/conf"
TARGETS = {"s2t_greedy": 0.02, "s2t_beam10": 0.2, "ctc_bs1": 0.02, "batched": 0.02}


def read_scp(path: Path):
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            key, value = line.split(maxsplit=1)
            out.append((key, value))
    return out


def find_recipe_dir(model_dir: Path, config: dict) -> Path:
    """The first of cwd, model_dir and its ancestors from which the config's stats file exists."""
    rel = (config.get("normalize_conf") or {}).get("stats_file")
    if not rel or Path(rel).is_absolute():
        return Path.cwd()
    for d in [Path.cwd(), model_dir, *model_dir.parents]:
        if (d / rel).exists():
            return d
    raise SystemExit(f"ERROR: {rel} (normalize_conf.stats_file of {model_dir}/config.yaml) not found "
                     f"relative to {model_dir} or its parents; pass --recipe_dir")


def best_path(model, speech_list, torch):
    """CTC best path of a list of 1-D float32 tensors, decoded as one padded batch (the batched mode
    only: per utterance, the package's CTCBestPathDecoder is timed)."""
    lengths = torch.tensor([len(x) for x in speech_list])
    speech = torch.nn.utils.rnn.pad_sequence(speech_list, batch_first=True)
    enc, enc_lens = model.encode(speech, lengths)
    if isinstance(enc, tuple):  # intermediate CTC outputs
        enc = enc[0]
    ids = model.ctc.argmax(enc)
    drop = {model.blank_id, model.sos, model.eos}
    return [[t for t, _ in groupby(ids[b, : enc_lens[b]].tolist()) if t not in drop]
            for b in range(len(speech_list))]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model_dir", type=Path, required=True, help="exported model: config.yaml + model.pth")
    ap.add_argument("--data_dir", type=Path, required=True, help="data dir with wav.scp")
    ap.add_argument("--recipe_dir", type=Path, default=None, help="resolve relative config paths here")
    ap.add_argument("--greedy_config", type=Path, default=CONF / "decode_ctc_greedy.yaml")
    ap.add_argument("--beam_config", type=Path, default=CONF / "decode_ctc_beam10.yaml")
    ap.add_argument("--modes", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    ap.add_argument("--batch_size", type=int, default=16, help="utterances per batch (batched mode)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=4, help="utterances decoded before timing, per mode")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (per job)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="decode the data dir in this many processes side by side, each a contiguous part, "
                         "as stage 12's --inference_nj decode_many jobs do; a pass is timed from a common "
                         "start to the last job's end")
    a = ap.parse_args(argv)
    if a.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {a.jobs}")
    # absolute now: measure() changes into the recipe dir, and the jobs start in this cwd
    a.model_dir, a.data_dir = a.model_dir.resolve(), a.data_dir.resolve()
    a.recipe_dir = a.recipe_dir.resolve() if a.recipe_dir else None
    return a


def contiguous_part(items, part, parts):
    """Part ``part`` (0-based) of ``parts`` contiguous, nearly equal parts, as the recipe splits keys."""
    base, extra = divmod(len(items), parts)
    start = part * base + min(part, extra)
    return items[start: start + base + (part < extra)]


def measure(a, part=0, parts=1, barrier=None):
    """Load the models and time every mode on part ``part`` of ``parts`` of the data dir; with a
    barrier, every timed pass starts when all jobs are ready. Returns plain data (picklable)."""
    import numpy as np
    import soundfile
    import torch
    import yaml

    t0 = time.perf_counter()
    from espnet2.bin.asr_inference import Speech2Text

    t_import = time.perf_counter() - t0
    torch.set_num_threads(a.threads)

    model_dir, data_dir = a.model_dir, a.data_dir
    config = yaml.safe_load((model_dir / "config.yaml").read_text())
    os.chdir(a.recipe_dir or find_recipe_dir(model_dir, config))

    entries = contiguous_part(read_scp(data_dir / "wav.scp"), part, parts)  # read only this job's audio
    if not entries:
        raise SystemExit(f"ERROR: {data_dir}/wav.scp has fewer utterances than --jobs {parts}")
    t0 = time.perf_counter()
    utts = []
    for key, path in entries:
        if not Path(path).is_absolute():
            path = str(Path.cwd() / path)
        wav, fs = soundfile.read(path, dtype="float32")
        utts.append((key, torch.from_numpy(np.ascontiguousarray(wav))))
    t_read = time.perf_counter() - t0
    audio_sec = sum(len(w) for _, w in utts) / fs

    def load(conf_path):
        kwargs = yaml.safe_load(conf_path.read_text())
        t0 = time.perf_counter()
        s2t = Speech2Text(asr_train_config=str(model_dir / "config.yaml"),
                          asr_model_file=str(model_dir / "model.pth"), device="cpu", **kwargs)
        return s2t, time.perf_counter() - t0

    t_load = {}
    s2t = {}
    if {"s2t_greedy", "ctc_bs1", "batched"} & set(a.modes):
        s2t["greedy"], t_load["greedy"] = load(a.greedy_config)
    if "s2t_beam10" in a.modes:
        s2t["beam10"], t_load["beam10"] = load(a.beam_config)
    model = next(iter(s2t.values())).asr_model  # the same weights in every Speech2Text
    model.eval()

    def run_s2t(which, subset):
        return [s2t[which](w)[0][2] for _, w in subset]

    from espnet_bilevel.decoding.ctc_best_path import CTCBestPathDecoder

    best_path_decoder = CTCBestPathDecoder(next(iter(s2t.values())))

    def run_bs1(subset):
        return [best_path_decoder(w)[2] for _, w in subset]

    def run_batched(subset):
        order = sorted(range(len(subset)), key=lambda i: -len(subset[i][1]))
        hyps = [None] * len(subset)
        for s in range(0, len(order), a.batch_size):
            idx = order[s: s + a.batch_size]
            for i, h in zip(idx, best_path(model, [subset[i][1] for i in idx], torch)):
                hyps[i] = h
        return hyps

    runners = {
        "s2t_greedy": lambda u: run_s2t("greedy", u),
        "s2t_beam10": lambda u: run_s2t("beam10", u),
        "ctc_bs1": run_bs1,
        "batched": run_batched,
    }
    times = {m: [] for m in a.modes}
    cpu = {m: [] for m in a.modes}  # process CPU time, all threads: less sensitive to other load
    hyps = {}
    with torch.no_grad():
        for m in a.modes:
            runners[m](utts[: a.warmup])
        for _ in range(a.repeats):
            for m in a.modes:
                if barrier is not None:
                    barrier.wait()
                t0, c0 = time.perf_counter(), time.process_time()
                hyps[m] = runners[m](utts)
                times[m].append(time.perf_counter() - t0)
                cpu[m].append(time.process_time() - c0)
    s2t_any = next(iter(s2t.values()))  # token list and tokenizer, the same in every Speech2Text
    texts = {m: {key: s2t_any.tokenizer.tokens2text(s2t_any.converter.ids2tokens(h))
                 for (key, _), h in zip(utts, hyps[m])} for m in a.modes}
    return {"times": times, "cpu": cpu, "hyps": hyps, "texts": texts, "n_utts": len(utts),
            "audio_sec": audio_sec, "t_import": t_import, "t_load": t_load, "t_read": t_read,
            "params": sum(p.numel() for p in model.parameters())}


def _job(a, part, parts, barrier, queue):
    try:
        queue.put((part, measure(a, part, parts, barrier)))
    except SystemExit as e:  # an input error: the parent reports it, once
        barrier.abort()
        queue.put((part, str(e.code).removeprefix("ERROR: ")))
    except BaseException as e:  # the parent must not wait for a job that died; the traceback is ours
        barrier.abort()
        queue.put((part, f"{type(e).__name__}: {e}"))
        raise


def measure_jobs(a):
    """--jobs N: N spawned processes, one part each. A pass's wall time is the slowest job's (all
    start together at the barrier), its CPU time the jobs' sum; hypotheses are joined in key order."""
    import multiprocessing
    import queue as queue_module

    ctx = multiprocessing.get_context("spawn")  # no fork after torch made its threads
    barrier, queue = ctx.Barrier(a.jobs), ctx.Queue()
    procs = [ctx.Process(target=_job, args=(a, k, a.jobs, barrier, queue)) for k in range(a.jobs)]
    for proc in procs:
        proc.start()
    results = {}
    while len(results) < a.jobs:
        try:
            part, r = queue.get(timeout=5)
        except queue_module.Empty:  # a job killed from outside (e.g. out of memory) reports nothing
            dead = [k for k, proc in enumerate(procs) if k not in results and proc.exitcode not in (None, 0)]
            if not dead:
                continue
            part, r = dead[0], f"exited with code {procs[dead[0]].exitcode}"
        if isinstance(r, str):
            for proc in procs:
                proc.terminate()
            raise SystemExit(f"ERROR: decoding job {part + 1}/{a.jobs} failed: {r}")
        results[part] = r
    for proc in procs:
        proc.join()
    parts = [results[k] for k in range(a.jobs)]
    joined = {
        "times": {m: [max(r["times"][m][i] for r in parts) for i in range(a.repeats)] for m in a.modes},
        "cpu": {m: [sum(r["cpu"][m][i] for r in parts) for i in range(a.repeats)] for m in a.modes},
        "hyps": {m: [h for r in parts for h in r["hyps"][m]] for m in a.modes},
        "texts": {m: {k: v for r in parts for k, v in r["texts"][m].items()} for m in a.modes},
        "n_utts": sum(r["n_utts"] for r in parts), "audio_sec": sum(r["audio_sec"] for r in parts),
        "t_import": max(r["t_import"] for r in parts), "t_read": max(r["t_read"] for r in parts),
        "t_load": {k: max(r["t_load"][k] for r in parts) for k in parts[0]["t_load"]},
        "params": parts[0]["params"],
    }
    return joined


def main(argv=None):
    a = parse_args(argv)
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    res = measure(a) if a.jobs == 1 else measure_jobs(a)
    times, cpu, hyps = res["times"], res["cpu"], res["hyps"]
    audio_sec, n_utts = res["audio_sec"], res["n_utts"]
    data_dir = a.data_dir
    load_end = os.getloadavg()

    print(f"model={a.model_dir} ({res['params'] / 1e6:.2f} M params) data={a.data_dir} threads={a.threads} "
          f"jobs={a.jobs} repeats={a.repeats} warmup={a.warmup} (per job) batch_size={a.batch_size}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in load_start)} (start), "
          f"{' '.join(f'{x:.2f}' for x in load_end)} (end)")
    print(f"not timed: ESPnet import {res['t_import']:.1f} s, model load "
          + ", ".join(f"{k} {v:.2f} s" for k, v in res["t_load"].items())
          + f", audio read {res['t_read']:.2f} s ({n_utts} files)")
    print()
    print("| mode | utterances | audio s | decode s (median) | RTF | target | pass | CPU s (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for m in a.modes:
        med = statistics.median(times[m])
        rtf = med / audio_sec
        label = f"batched (bs {a.batch_size})" if m == "batched" else m
        print(f"| {label} | {n_utts} | {audio_sec:.1f} | {med:.2f} | {rtf:.4f} | <= {TARGETS[m]} | "
              f"{'pass' if rtf <= TARGETS[m] else 'FAIL'} | {statistics.median(cpu[m]):.2f} |")
    print()
    if "s2t_greedy" in hyps:
        for m in ("ctc_bs1", "batched"):
            if m in hyps:
                same = sum(x == y for x, y in zip(hyps[m], hyps["s2t_greedy"]))
                print(f"agreement {m} vs s2t_greedy: {same}/{n_utts} identical token sequences")
    if "ctc_bs1" in hyps and "batched" in hyps:
        same = sum(x == y for x, y in zip(hyps["batched"], hyps["ctc_bs1"]))
        print(f"agreement batched vs ctc_bs1: {same}/{n_utts} identical token sequences")
    if (data_dir / "text").is_file():
        from espnet_bilevel.data.scoring import read_text, score_texts

        refs = read_text(data_dir / "text", allow_empty=False)
        print()
        print(f"| mode | WER (%) | CER (%) |  ({data_dir / 'text'})")
        print("|---|---|---|")
        for m in a.modes:
            texts = res["texts"][m]
            w = score_texts(refs, texts, "word").percentages()["err"]
            c = score_texts(refs, texts, "char").percentages()["err"]
            print(f"| {m} | {w:.1f} | {c:.1f} |")
    print(f"wall {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
