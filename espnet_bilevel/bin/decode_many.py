#!/usr/bin/env python3
"""Run several ``espnet2.bin.asr_inference`` decodings in ONE Python process.

Each ESPnet CLI start costs ~17 s of imports on a small CPU; bilevel_asr.sh stage 12 therefore
starts one process per parallel job (``--inference_nj``) and lets it decode every (system,
test set) pair of that job's key split.

Usage:
  python -m espnet_bilevel.bin.decode_many --jobs jobs.tsv [-- <asr_inference options>...]

``jobs.tsv`` has one decoding per line, tab-separated:

  <output_dir> <asr_train_config> <asr_model_file> <wav.scp> <key_file> [<data type>]

The optional sixth field is the ESPnet data type of the fourth one: ``sound`` (the default) for a
wav.scp, ``kaldi_ark`` for a feats.scp of extracted features (``--feats_type fbank``).

Everything after ``--`` is passed to every decoding unchanged (e.g. ``--config
conf/decode_ctc_greedy.yaml --ngpu 0 --batch_size 1``); any ``espnet2.bin.asr_inference`` option
works. Each decoding writes ``<output_dir>.tmp`` and renames it to ``<output_dir>`` when it
finished, so a crash never leaves a complete-looking output; a finished ``<output_dir>`` (with
``1best_recog/text``) is skipped on rerun. Exit status 1 with "ERROR: ..." on bad input or a
failed decoding.

A ``--config`` that says ``ctc_best_path: true`` (conf/decode_ctc_bestpath.yaml) selects CTC best-path
decoding (espnet_bilevel.decoding.ctc_best_path) instead of ESPnet's beam search: the same output
files, 8-14x faster than ESPnet's beam-1 search on the mini models. Of the other options it uses ``--ngpu`` and accepts
``--batch_size 1``; anything else (an LM, beam options) is an error, since best path would ignore it.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import List, Optional

from espnet_bilevel.data.job_file import read_job_lines


def read_jobs(path: Path) -> List[List[str]]:
    jobs = []
    for lineno, fields in read_job_lines(path):
        if len(fields) not in (5, 6):
            raise SystemExit(f"ERROR: {path}:{lineno}: expected 5 tab-separated fields (6 with a data type), "
                             f"got {len(fields)}")
        if len(fields) == 5:
            fields.append("sound")
        for f in fields[1:5]:
            if not Path(f).exists():
                raise SystemExit(f"ERROR: {path}:{lineno}: file not found: {f}")
        jobs.append(fields)
    return jobs


def best_path_device(extra: List[str], config: Path) -> Optional[str]:
    """The torch device if ``--config`` selects CTC best path (``ctc_best_path: true``), else None.
    Options that best path would silently ignore are an error."""
    import yaml

    try:
        conf = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SystemExit(f"ERROR: cannot read the decoding config {config}: {e}")
    if not isinstance(conf, dict) or conf.get("ctc_best_path") is not True:
        return None
    if set(conf) != {"ctc_best_path"}:
        raise SystemExit(f"ERROR: {config}: a ctc_best_path config takes no other keys, got "
                         f"{sorted(set(conf) - {'ctc_best_path'})} (beam and LM options need ESPnet's beam search)")
    opts = dict(zip(extra[0::2], extra[1::2]))
    unused = sorted(set(opts) - {"--config", "--ngpu", "--batch_size"})
    if len(extra) % 2 or unused:
        raise SystemExit(f"ERROR: CTC best-path decoding ({config}) does not use {unused or extra}; "
                         "drop them or decode with an espnet2.bin.asr_inference config")
    if opts.get("--batch_size", "1") != "1":
        raise SystemExit("ERROR: CTC best-path decoding works one utterance at a time: --batch_size must be 1")
    return "cuda" if int(opts.get("--ngpu", "0")) > 0 else "cpu"


def decode_one(job: List[str], extra: List[str], device: Optional[str] = None,
               loaded: Optional[dict] = None) -> float:
    """Decode one job; ``device`` set = CTC best path on it (``loaded`` keeps the last model, which
    the next job of the same system reuses: jobs come grouped by model), else asr_inference."""
    out_dir, config, model, wav_scp, key_file, data_type = job
    final = Path(out_dir)
    if (final / "1best_recog" / "text").is_file():
        print(f"decode_many: {final} exists; skipped", file=sys.stderr)
        return 0.0
    tmp = Path(out_dir + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    start = time.perf_counter()
    if device is not None:
        from espnet_bilevel.decoding.ctc_best_path import CTCBestPathDecoder, decode_to_dir

        loaded = {} if loaded is None else loaded
        if loaded.get("key") != (config, model):  # one model in memory at a time
            loaded.clear()
            loaded.update(key=(config, model), decoder=CTCBestPathDecoder.from_files(config, model, device=device))
        decode_to_dir(loaded["decoder"], wav_scp, data_type, key_file, tmp)
    else:
        from espnet2.bin.asr_inference import main as asr_inference_main

        asr_inference_main(
            [
                "--asr_train_config", config, "--asr_model_file", model,
                "--data_path_and_name_and_type", f"{wav_scp},speech,{data_type}",
                "--key_file", key_file, "--output_dir", str(tmp),
            ]
            + extra
        )
    if not (tmp / "1best_recog" / "text").is_file():
        raise RuntimeError(f"asr_inference wrote no {tmp}/1best_recog/text")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return time.perf_counter() - start


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: List[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=Path, required=True, help="tab-separated job file (see above)")
    args = parser.parse_args(argv)
    jobs = read_jobs(args.jobs)
    device = None
    if "--config" in extra[:-1]:
        config = Path(extra[extra.index("--config") + 1])
        device = best_path_device(extra, config)
        if device is not None:
            print(f"decode_many: CTC best path ({config}) on {device}", file=sys.stderr)
    loaded: dict = {}
    t0 = time.perf_counter()
    for job in jobs:
        seconds = decode_one(job, extra, device, loaded)
        print(f"decode_many: {job[0]}: {seconds:.1f} s", file=sys.stderr)
    print(f"decode_many: {len(jobs)} decodings in {time.perf_counter() - t0:.1f} s (after imports)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
