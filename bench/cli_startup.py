#!/usr/bin/env python3
"""Start-up cost of the Python entry points the recipe (egs2/TEMPLATE/asr1/bilevel_asr.sh) runs,
and what it adds up to per stage of a default mini_synth run.

Usage:
  tools/venv/bin/python bench/cli_startup.py                    # all probes, 3 fresh processes each
  tools/venv/bin/python bench/cli_startup.py --repeats 5
  tools/venv/bin/python bench/cli_startup.py --probes torch pass score   # a subset (name substrings)

Every probe is run ``--repeats`` times, each in a fresh process, in the recipe's environment
(``path.sh``: PYTHONPATH=<repo>, OMP_NUM_THREADS=1), and the median wall time is printed. A probe is
the entry point's ``--help`` or, when the module imports its heavy dependencies lazily (so ``--help``
would not show them), an import of the module plus what it imports before its first real work
(e.g. decode_many imports ``espnet2.bin.asr_inference`` only when it decodes). The child's CPU time
(user + system) is printed too; unlike the wall time it hardly grows when other work shares the CPU.

The stage table multiplies, for every recipe stage, the number of Python processes a default run of
``egs2/mini_synth/asr1/run.sh`` starts (counted from bilevel_asr.sh: 4 systems, test sets dev and
test, --nj 2, --inference_nj 2, --train_jobs 2, raw features, char tokens, no LM, no speed
perturbation) by the median start-up of its probe (with --seeds k, stages 11, 13-15 and the key
splits of stage 12 start k times as many). "start-up sum" adds every process; "start-up
wall" counts processes started side by side (run_local.sh JOB=1:2, --train_jobs) once per wave.
The processes that leave a header in a log are also counted from ``--exp_dir`` (headers dated within
the first full run, so later re-runs do not count), as a cross-check. Stage times are the
measurements of egs2/mini_synth/asr1/README.md (default setting).

What the recipe already does to keep start-up down (each checked in the code):
  * stage 12 exports every system in ONE process (espnet_bilevel.bin.export_many, --exp repeated);
  * stage 12 decodes with --inference_nj decode_many processes, each decoding its key split of every
    (system, test set) pair: 2 ESPnet starts instead of 4 systems x 2 sets x 2 splits = 16;
  * data prep, validation, scoring and the HF model card are torch-free modules
    (pyscripts/data_tools.py, espnet_bilevel.bin.{synth_corpus,validate_data_dir,score,hf_upload}):
    stdlib at module level, numpy/soundfile/sentencepiece imported inside the function that needs
    them (this script checks that importing them does not load torch or espnet2);
  * stage 10 collects the statistics of the labeled and the unlabeled stream in the same
    --collect_stats jobs (--train_unlab_data_path_and_name_and_type), not in a second round;
  * --train_jobs N runs N trainings side by side (run.sh: 2), overlapping their start-up;
  * with --feats_type fbank, one round of --nj extract_fbank jobs covers all sets (one torch start per
    job, not per set);
  * finished work is skipped on a rerun without starting Python: decode dirs with .done, packs newer
    than their inputs, scoring whose result.json is newer than the hypotheses; export_many skips an
    export whose source_model is unchanged (after its cheap, torch-free argument check).
"""
import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2/mini_synth/asr1"
DATA_TOOLS = REPO / "egs2/TEMPLATE/asr1/pyscripts/data_tools.py"

# name -> python arguments
PROBES = {
    "python -c pass": ["-c", "pass"],
    "import torch": ["-c", "import torch"],
    "import espnet2": ["-c", "import espnet2"],
    "import espnet2.tasks.asr": ["-c", "import espnet2.tasks.asr"],
    "espnet2.bin.asr_train --help": ["-m", "espnet2.bin.asr_train", "--help"],
    "bilevel_asr_train --help": ["-m", "espnet_bilevel.bin.bilevel_asr_train", "--help"],
    "espnet2.bin.asr_inference --help": ["-m", "espnet2.bin.asr_inference", "--help"],
    "decode_many (+ asr_inference)": ["-c", "import espnet_bilevel.bin.decode_many, espnet2.bin.asr_inference"],
    "export_many (+ torch, espnet2.tasks.asr)": [
        "-c", "import espnet_bilevel.bin.export_many, espnet_bilevel.bin.bilevel_export, torch, espnet2.tasks.asr"],
    "espnet2.bin.tokenize_text --help": ["-m", "espnet2.bin.tokenize_text", "--help"],
    "espnet2.bin.pack --help": ["-m", "espnet2.bin.pack", "--help"],
    "pack (+ torch, imported when packing)": ["-c", "import espnet2.bin.pack, torch"],
    "compare_systems (+ torch, matplotlib)": [
        "-c", "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot, torch, "
              "espnet_bilevel.bin.compare_systems"],
    "data_tools.py --help": [str(DATA_TOOLS), "--help"],
    "data_tools (+ numpy, soundfile)": [
        "-c", f"import sys; sys.path.insert(0, {str(DATA_TOOLS.parent)!r}); import data_tools, numpy, soundfile"],
    "synth_corpus --help": ["-m", "espnet_bilevel.bin.synth_corpus", "--help"],
    "validate_data_dir --help": ["-m", "espnet_bilevel.bin.validate_data_dir", "--help"],
    "score --help": ["-m", "espnet_bilevel.bin.score", "--help"],
    "hf_upload --help": ["-m", "espnet_bilevel.bin.hf_upload", "--help"],
}
TORCH_FREE = {  # module (or script) -> import statement; checked to load neither torch nor espnet2
    "pyscripts/data_tools.py": f"import sys; sys.path.insert(0, {str(DATA_TOOLS.parent)!r}); import data_tools",
    **{f"espnet_bilevel.bin.{m}": f"import espnet_bilevel.bin.{m}"
       for m in ("synth_corpus", "validate_data_dir", "score", "hf_upload", "decode_many", "export_many")},
}

# Default mini_synth run (egs2/mini_synth/asr1/run.sh): per stage, (probe, processes, waves) and the
# stage time measured in egs2/mini_synth/asr1/README.md ("default setting"), in seconds.
# waves = how many of the processes start one after the other (None: all of them).
STAGES = [
    ("1", "synthesize corpus", [("synth_corpus --help", 1, None)], 8),
    ("3-4", "format + validate 4 sets, filter 3",
     [("data_tools (+ numpy, soundfile)", 4 + 3, None), ("validate_data_dir --help", 4, None)], 2),
    ("5", "char token list", [("espnet2.bin.tokenize_text --help", 1, None)], 8),
    ("10", "stats: 3 splits, 2 jobs, 2 aggregates, 2 vocab suffixes",
     [("data_tools (+ numpy, soundfile)", 3 + 2 + 2, None), ("bilevel_asr_train --help", 2, 1)], 20),
    ("11", "5 trainings, --train_jobs 2", [("bilevel_asr_train --help", 5, 3)], 345),
    ("12", "export_many, 8 key splits, 2 decode_many",
     [("export_many (+ torch, espnet2.tasks.asr)", 1, None), ("data_tools (+ numpy, soundfile)", 8, None),
      ("decode_many (+ asr_inference)", 2, 1)], 131),
    ("13", "score 8 dirs + 8 markdown tables", [("score --help", 16, None)], 2),
    ("14", "pack 4 systems", [("pack (+ torch, imported when packing)", 4, None)], 10),
    ("15", "4 model cards + HF staging (dry run)", [("hf_upload --help", 4, None)], 1),
    ("16", "compare systems", [("compare_systems (+ torch, matplotlib)", 1, None)], 4),
]
# logs whose headers name the Python processes of a stage (relative to --exp_dir)
STAGE_LOGS = {
    "1": ["logs/stage1_data.log"],
    "3-4": ["logs/stage3_format_*.log", "logs/stage4_filter.log"],
    "5": ["logs/stage5_tokens.log"],
    "10": ["asr_stats_*/logdir/stats.*.log", "logs/stage10_aggregate.log"],
    "11": ["asr_*_*/train.log"],
    "12": ["logs/stage12_export.log", "decode_jobs/*/*/decode.*.log"],
    "13": ["asr_*/*/*/score.log"],
    "14": ["asr_*/pack.log"],
    "15": ["asr_*/hf_upload.log"],
    "16": ["logs/stage16_compare.log"],
}


def recipe_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    env["LC_ALL"] = "C"
    return env


def time_probe(python, args, env):
    """(wall s, CPU s of the child: user + system) of one fresh process."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([python, *args], cwd=RECIPE, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"ERROR: {' '.join(args)} exited {r.returncode}:\n{r.stderr[-2000:]}")
    return dt, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def logged_starts(exp_dir: Path):
    """Python processes per stage named by log headers within the window of the first full run
    (first stage-1 start to the first stage-16 start after it, + 1 min). run_logged writes
    '# <ISO time> <cmd>', run_local.sh '# <cmd>' then '# Started at <date>'; a header of
    local/data.sh stands for its one synth_corpus process."""
    entries = {}
    for stage, globs in STAGE_LOGS.items():
        for g in globs:
            for log in sorted(exp_dir.glob(g)):
                lines = log.read_text(errors="replace").splitlines()
                for i, line in enumerate(lines):
                    m = re.match(r"# (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d) (\S+)", line)
                    if m:
                        when, prog = datetime.fromisoformat(m.group(1)), m.group(2)
                    elif line.startswith("# ") and i + 1 < len(lines) and lines[i + 1].startswith("# Started at "):
                        stamp = lines[i + 1][len("# Started at "):].rsplit(" on ", 1)[0]
                        when = datetime.strptime(stamp, "%a %b %d %H:%M:%S %Z %Y")
                        prog = line.split()[1]
                    else:
                        continue
                    if "python" in prog or prog.endswith("data.sh"):
                        entries.setdefault(stage, []).append(when)
    if "1" not in entries or "16" not in entries:
        return None
    start = min(entries["1"])
    ends = [t for t in entries["16"] if t >= start]
    if not ends:
        return None
    end = min(ends) + timedelta(seconds=60)
    return {s: sum(start <= t <= end for t in ts) for s, ts in entries.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per probe")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--probes", nargs="*", default=None, help="only probes whose name contains one of these")
    ap.add_argument("--exp_dir", type=Path, default=RECIPE / "exp", help="a finished default run, for log counts")
    a = ap.parse_args()
    t_start = time.perf_counter()
    env = recipe_env()
    names = [n for n in PROBES if a.probes is None or any(p in n for p in a.probes)]
    print(f"python={a.python} repeats={a.repeats} OMP_NUM_THREADS={env['OMP_NUM_THREADS']} "
          f"PYTHONDONTWRITEBYTECODE={env.get('PYTHONDONTWRITEBYTECODE', '')} cores={os.cpu_count()}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    times = {n: [] for n in names}
    cpu = {n: [] for n in names}
    for n in names:  # one untimed start first: page cache, not the interpreter, is warmed
        time_probe(a.python, PROBES[n], env)
    for _ in range(a.repeats):  # rounds over all probes, so load drift hits them alike
        for n in names:
            wall, c = time_probe(a.python, PROBES[n], env)
            times[n].append(wall)
            cpu[n].append(c)
    med = {n: statistics.median(ts) for n, ts in times.items()}
    print()
    print("| entry point (probe) | median s | min s | max s | median CPU s |")
    print("|---|---|---|---|---|")
    for n in names:
        print(f"| {n} | {med[n]:.2f} | {min(times[n]):.2f} | {max(times[n]):.2f} | {statistics.median(cpu[n]):.2f} |")

    print()
    print("| module | loads torch or espnet2 on import |")
    print("|---|---|")
    for mod, stmt in TORCH_FREE.items():
        r = subprocess.run([a.python, "-c", stmt + "; import sys; print(int(any(m in sys.modules for m in "
                            "('torch', 'espnet2'))))"], cwd=RECIPE, env=env, capture_output=True, text=True)
        print(f"| {mod} | {'yes' if r.stdout.strip() == '1' else 'no' if r.stdout.strip() == '0' else 'ERROR'} |")

    if not all(p in med for _, _, parts, _ in STAGES for p, _, _ in parts):
        print(f"\n(stage table needs all probes; run without --probes)\nwall {time.perf_counter() - t_start:.1f} s")
        return
    logged = logged_starts(a.exp_dir) if a.exp_dir.is_dir() else None
    print()
    print(f"| stage | what | Python processes | logged in {a.exp_dir.name}/ | start-up sum s | "
          f"start-up wall s | stage time s (README) | wall share |")
    print("|---|---|---|---|---|---|---|---|")
    tot = [0, 0.0, 0.0, 0]
    for stage, what, parts, stage_sec in STAGES:
        n = sum(k for _, k, _ in parts)
        s = sum(k * med[p] for p, k, _ in parts)
        w = sum((k if waves is None else waves) * med[p] for p, k, waves in parts)
        log_n = "-" if logged is None else str(logged.get(stage, 0))
        print(f"| {stage} | {what} | {n} | {log_n} | {s:.1f} | {w:.1f} | {stage_sec} | {100 * w / stage_sec:.0f} % |")
        tot = [tot[0] + n, tot[1] + s, tot[2] + w, tot[3] + stage_sec]
    print(f"| all | | {tot[0]} | | {tot[1]:.1f} | {tot[2]:.1f} | {tot[3]} | {100 * tot[2] / tot[3]:.0f} % |")
    print("\n(logged = processes of the first full run that left a log header; key splits, vocab suffixes "
          "and score --markdown calls write none, and a later stage-12 run replaces exp/decode_jobs/. "
          "A share above 100 % means the start-up measured now exceeds that stage's time in the README run: "
          "the stage is all start-up, and this machine is busier or slower now.)")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"wall {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
