#!/usr/bin/env python3
"""Start-up cost of the Python entry points the recipe (egs2/TEMPLATE/asr1/bilevel_asr.sh) runs,
and what it adds up to per stage of a real recipe run.

Usage:
  tools/venv/bin/python bench/cli_startup.py                    # all probes, 3 fresh processes each
  tools/venv/bin/python bench/cli_startup.py --repeats 5
  tools/venv/bin/python bench/cli_startup.py --probes torch pass score   # a subset (name substrings)
  # trace a recipe run (every Python process start recorded; the run's output is echoed), then
  # the start-up per stage of that run:
  tools/venv/bin/python bench/cli_startup.py --trace_run /tmp/trace -- egs2/mini_synth/asr1/run.sh
  tools/venv/bin/python bench/cli_startup.py --trace /tmp/trace

Every probe is run ``--repeats`` times, each in a fresh process, in the recipe's environment
(``path.sh``: PYTHONPATH=<repo>, OMP_NUM_THREADS=1), and the median wall time is printed. A probe is
the entry point's ``--help`` or, when the module imports its heavy dependencies lazily (so ``--help``
would not show them), an import of the module plus what it imports before its first real work
(e.g. decode_many imports ``espnet2.bin.asr_inference`` only when it decodes). The child's CPU time
(user + system) is printed too; unlike the wall time it hardly grows when other work shares the CPU.

``--trace_run DIR -- <command>`` runs the command with bench/pytrace on PYTHONPATH: its
sitecustomize.py appends every Python process start (time, command line) to DIR/processes.jsonl,
and the command's output goes, each line stamped with the time it was read, to DIR/run.log. So the
processes per stage are counted from what the run did, whatever the systems, seeds and options,
not from the shell scripts by hand. ``--trace DIR`` then gives, per stage (from its first
"stage <n>:" log line to the next stage's; a process counts in the stage that started it, which
bilevel_asr.sh exports as BILEVEL_STAGE): the processes by probe, their start-up summed ("sum")
and the wall time in which at least one of them was starting, each process taken as
[start, start + its probe's median) ("wall": jobs started side by side count once), and that
wall time's share of the stage's. A process whose entry has no probe is counted and named.

What the recipe already does to keep start-up down (each checked in the code):
  * stage 12 exports every system in ONE process (espnet_bilevel.bin.export_many, --exp repeated);
  * stage 14 packs every system in ONE process (espnet_bilevel.bin.pack_many: espnet2.bin.pack's own
    main per system), not one espnet2.bin.pack start (torch import) per system;
  * stage 12 decodes with --inference_nj decode_many processes, each decoding its key split of every
    (system, test set) pair: 2 ESPnet starts instead of 8 systems x 2 sets x 2 splits = 32;
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
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
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
    "pack_many (+ espnet2.bin.pack, torch)": ["-c", "import espnet_bilevel.bin.pack_many, espnet2.bin.pack, torch"],
    "compare_systems (+ torch, matplotlib)": [
        "-c", "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot, torch, "
              "espnet_bilevel.bin.compare_systems"],
    "data_tools.py --help": [str(DATA_TOOLS), "--help"],
    "data_tools (+ numpy, soundfile)": [
        "-c", f"import sys; sys.path.insert(0, {str(DATA_TOOLS.parent)!r}); import data_tools, numpy, soundfile"],
    "espnet2.bin.hubert_train --help": ["-m", "espnet2.bin.hubert_train", "--help"],
    "hubert_kmeans_labels (+ torch, torchaudio)": [
        "-c", "import espnet_bilevel.bin.hubert_kmeans_labels, torch, torchaudio"],
    "average_checkpoints (+ torch)": [
        "-c", "import espnet_bilevel.bin.average_checkpoints, espnet_bilevel.checkpoints.average_nbest"],
    "synth_corpus --help": ["-m", "espnet_bilevel.bin.synth_corpus", "--help"],
    "validate_data_dir --help": ["-m", "espnet_bilevel.bin.validate_data_dir", "--help"],
    "score --help": ["-m", "espnet_bilevel.bin.score", "--help"],
    "hf_upload --help": ["-m", "espnet_bilevel.bin.hf_upload", "--help"],
}
TORCH_FREE = {  # module (or script) -> import statement; checked to load neither torch nor espnet2
    "pyscripts/data_tools.py": f"import sys; sys.path.insert(0, {str(DATA_TOOLS.parent)!r}); import data_tools",
    **{f"espnet_bilevel.bin.{m}": f"import espnet_bilevel.bin.{m}"
       for m in ("synth_corpus", "validate_data_dir", "score", "hf_upload", "decode_many", "export_many",
                 "pack_many")},
}

# What the stage table counts comes from a traced run of the recipe (--trace_run), not from the shell
# scripts by hand: bench/pytrace/sitecustomize.py records every Python process start of the run.
PYTRACE_DIR = REPO / "bench/pytrace"
# A traced process is matched to a probe by its entry: the module after -m, or the script's file name.
PROBE_OF_ENTRY = {
    "espnet_bilevel.bin.synth_corpus": "synth_corpus --help",
    "data_tools.py": "data_tools (+ numpy, soundfile)",
    "espnet_bilevel.bin.validate_data_dir": "validate_data_dir --help",
    "espnet2.bin.tokenize_text": "espnet2.bin.tokenize_text --help",
    "espnet_bilevel.bin.bilevel_asr_train": "bilevel_asr_train --help",
    "espnet2.bin.asr_train": "espnet2.bin.asr_train --help",
    "espnet2.bin.hubert_train": "espnet2.bin.hubert_train --help",
    "espnet_bilevel.bin.hubert_kmeans_labels": "hubert_kmeans_labels (+ torch, torchaudio)",
    "espnet_bilevel.bin.average_checkpoints": "average_checkpoints (+ torch)",
    "espnet_bilevel.bin.export_many": "export_many (+ torch, espnet2.tasks.asr)",
    "espnet_bilevel.bin.decode_many": "decode_many (+ asr_inference)",
    "espnet_bilevel.bin.score": "score --help",
    "espnet2.bin.pack": "pack (+ torch, imported when packing)",
    "espnet_bilevel.bin.pack_many": "pack_many (+ espnet2.bin.pack, torch)",
    "espnet_bilevel.bin.hf_upload": "hf_upload --help",
    "espnet_bilevel.bin.compare_systems": "compare_systems (+ torch, matplotlib)",
}
# the recipe's stage log lines: "<time> (bilevel_asr.sh:<line>:<function>) stage <n>: ..."
STAGE_LINE = re.compile(r"\(bilevel_asr\.sh:\d+:[^)]*\) stage (\d+)\b")


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


def trace_run(trace_dir: Path, command):
    """Run ``command`` (a recipe run) with every Python start recorded in trace_dir/processes.jsonl
    and its output, each line stamped with the time it was read, in trace_dir/run.log (also echoed)."""
    if not command:
        raise SystemExit("ERROR: --trace_run needs the command to trace after --, e.g. "
                         "--trace_run /tmp/trace -- egs2/mini_synth/asr1/run.sh")
    if trace_dir.exists() and any(trace_dir.iterdir()):
        raise SystemExit(f"ERROR: {trace_dir} is not empty; a trace goes into a new directory")
    trace_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTRACE_DIR) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["BENCH_PYTRACE_FILE"] = str(trace_dir / "processes.jsonl")
    info = {"command": command, "cwd": os.getcwd(), "started": time.time()}
    (trace_dir / "command.json").write_text(json.dumps(info, indent=1) + "\n")
    with open(trace_dir / "run.log", "w") as log:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", bufsize=1)
        for line in proc.stdout:
            log.write(f"{time.time():.3f} {line}")
            log.flush()
            sys.stdout.write(line)
            sys.stdout.flush()
        rc = proc.wait()
    info.update(ended=time.time(), returncode=rc)
    (trace_dir / "command.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"\ntrace in {trace_dir} (exit {rc}); the stage table: {sys.argv[0]} --trace {trace_dir}")
    return rc


def entry_of(argv):
    """The module after -m, the file name of the script, '-c' for a command string; None if unknown."""
    args = argv[1:]
    for i, a in enumerate(args):
        if a == "-m":
            return args[i + 1] if i + 1 < len(args) else None
        if a == "-c":
            return "-c"
        if a.startswith("-"):
            continue
        return Path(a).name
    return None


def read_trace(trace_dir: Path):
    """(processes sorted by start time, [(stage, start time)] in order, end time of the run)."""
    proc_file, log_file = trace_dir / "processes.jsonl", trace_dir / "run.log"
    for f in (proc_file, log_file):
        if not f.is_file():
            raise SystemExit(f"ERROR: {f} is missing; make a trace with --trace_run {trace_dir} -- <run.sh ...>")
    processes = []
    for n, line in enumerate(proc_file.read_text().splitlines(), 1):
        try:
            rec = json.loads(line)
            processes.append({"t": float(rec["t"]), "argv": list(rec["argv"]), "stage": rec.get("stage")})
        except (ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"ERROR: {proc_file}:{n}: not a trace record ({e}): {line[:200]!r}")
    processes.sort(key=lambda p: p["t"])
    stages, run_end = [], None
    for n, line in enumerate(log_file.read_text(errors="replace").splitlines(), 1):
        stamp, _, text = line.partition(" ")
        try:
            t = float(stamp)
        except ValueError:
            raise SystemExit(f"ERROR: {log_file}:{n}: a line of run.log starts with its time stamp: {line[:200]!r}")
        run_end = t
        m = STAGE_LINE.search(text)
        if m and m.group(1) not in {s for s, _ in stages}:
            stages.append((m.group(1), t))
    if not stages:
        raise SystemExit(f"ERROR: {log_file} has no stage lines of bilevel_asr.sh ('(bilevel_asr.sh:<n>:<fn>) stage <k>:')")
    return processes, stages, run_end


def stage_of(t, stages):
    """The stage running at time t: the last one whose first log line is not after t."""
    current = f"before {stages[0][0]}"
    for stage, start in stages:
        if start <= t:
            current = stage
    return current


def busy_time(intervals):
    """Length of the union of [start, end) intervals: wall time in which at least one is running."""
    total, cur_start, cur_end = 0.0, None, None
    for start, end in sorted(intervals):
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


def stage_rows(processes, stages, run_end, startup):
    """One row per stage that started Python: its processes by probe, the start-up they add up to
    (sum) and the wall time in which at least one of them was starting ([start, start + probe
    median), so processes started side by side count once), and the stage's wall time from the log
    (its first "stage <n>:" line, or its first process if earlier, to the next stage's start). A
    process belongs to the stage recorded with it (BILEVEL_STAGE, which bilevel_asr.sh exports when
    a stage starts), else to the stage whose first log line came last before it (work a stage does
    before its first log line then counts in the stage before). Rows are in stage order.
    startup: probe -> median start-up s. Unmatched processes are counted and named, not estimated."""
    first_process = {}
    for p in processes:  # sorted by time
        if p.get("stage"):
            first_process.setdefault(p["stage"], p["t"])
    # a stage starts at its first log line or at its first process if that came earlier
    stages = [(s, min(t, first_process.get(s, t))) for s, t in stages]
    ends = {s: (stages[i + 1][1] if i + 1 < len(stages) else run_end) for i, (s, _) in enumerate(stages)}
    starts = dict(stages)
    rows = {}
    for p in processes:
        # the stage the recipe exported (BILEVEL_STAGE); by time only for traces without it
        stage = p.get("stage") or stage_of(p["t"], stages)
        row = rows.setdefault(stage, {"stage": stage, "count": {}, "unmatched": [], "intervals": []})
        entry = entry_of(p["argv"])
        probe = PROBE_OF_ENTRY.get(entry)
        if probe is None or probe not in startup:
            row["unmatched"].append(" ".join(p["argv"][1:3]))
            continue
        row["count"][probe] = row["count"].get(probe, 0) + 1
        row["intervals"].append((p["t"], p["t"] + startup[probe]))
    order = {s: i for i, (s, _) in enumerate(stages)}
    out = []
    for stage, row in sorted(rows.items(), key=lambda kv: order.get(kv[0], -1)):
        n = sum(row["count"].values()) + len(row["unmatched"])
        stage_wall = ends[stage] - starts[stage] if stage in starts else None
        out.append({
            "stage": stage, "processes": n, "count": row["count"], "unmatched": row["unmatched"],
            "startup_sum": sum(k * startup[p] for p, k in row["count"].items()),
            "startup_wall": busy_time(row["intervals"]), "stage_wall": stage_wall,
        })
    return out


def print_stage_table(trace_dir: Path, trace, med):
    processes, stages, run_end = trace
    rows = stage_rows(processes, stages, run_end, med)
    print()
    print(f"Traced run {trace_dir}: {len(processes)} Python processes, "
          f"{run_end - stages[0][1]:.0f} s from the first stage line to the end of the run")
    print()
    print("| stage | Python processes (by probe) | n | start-up sum s | start-up wall s | stage wall s | wall share |")
    print("|---|---|---|---|---|---|---|")
    tot = [0, 0.0, 0.0, 0.0]
    for r in rows:
        parts = [", ".join(f"{k} × {p}" for p, k in sorted(r["count"].items(), key=lambda kv: -kv[1]))]
        if r["unmatched"]:
            parts.append(f"{len(r['unmatched'])} without a probe: " + "; ".join(sorted(set(r["unmatched"]))))
        what = "; ".join(x for x in parts if x)
        wall = r["stage_wall"]
        share = f"{100 * r['startup_wall'] / wall:.0f} %" if wall else "-"
        print(f"| {r['stage']} | {what} | {r['processes']} | {r['startup_sum']:.1f} | {r['startup_wall']:.1f} | "
              f"{'-' if wall is None else f'{wall:.0f}'} | {share} |")
        tot = [tot[0] + r["processes"], tot[1] + r["startup_sum"], tot[2] + r["startup_wall"], tot[3] + (wall or 0)]
    print(f"| all | | {tot[0]} | {tot[1]:.1f} | {tot[2]:.1f} | {tot[3]:.0f} | {100 * tot[2] / tot[3]:.0f} % |")
    silent = [s for s, _ in stages if s not in {r["stage"] for r in rows}]
    if silent:
        print(f"\nstages without a Python process: {', '.join(silent)}")
    print("\n(start-up sum: every process's probe median; start-up wall: the time in which at least one of "
          "the stage's processes was starting, [start, start + median), so jobs started side by side count "
          "once; stage wall: from the stage's first log line (or first process, if earlier) to the next "
          "stage's start.)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per probe")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--probes", nargs="*", default=None, help="only probes whose name contains one of these")
    ap.add_argument("--trace", type=Path, default=None,
                    help="a trace made by --trace_run: print the start-up per stage of that run")
    ap.add_argument("--trace_run", type=Path, default=None, metavar="DIR",
                    help="run the command after -- with every Python start traced into DIR (new), then stop")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="with --trace_run: -- <recipe command>")
    a = ap.parse_args()
    if a.trace_run is not None:
        command = a.command[1:] if a.command[:1] == ["--"] else a.command
        raise SystemExit(trace_run(a.trace_run, command))
    if a.command:
        ap.error(f"unexpected arguments {a.command} (a command is only taken with --trace_run)")
    trace = read_trace(a.trace) if a.trace is not None else None  # a bad trace fails now, not after the probes
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

    if trace is not None:
        print_stage_table(a.trace, trace, med)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"wall {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
