"""Process-start tracer for bench/cli_startup.py --trace_run (not part of the package).

Python imports ``sitecustomize`` at every interpreter start, after putting PYTHONPATH on sys.path.
With this directory on PYTHONPATH and BENCH_PYTRACE_FILE set, every Python process appends one JSON
line (start time, pid, parent pid, recipe stage, command line) to that file, so a recipe run can be counted per
stage without counting processes by hand from the shell scripts. Forked children (DataLoader
workers, multiprocessing 'fork') do not start an interpreter and are, rightly, not counted.
stdlib only, no output, and nothing happens without BENCH_PYTRACE_FILE. On PYTHONPATH it shadows any
other sitecustomize module (the venv has none); put it there only for a traced run.
"""
import os

_TRACE_FILE = os.environ.get("BENCH_PYTRACE_FILE")
if _TRACE_FILE:
    import json
    import time

    def _record():
        try:  # sys.argv is not set yet while site runs; /proc has the full command line
            with open("/proc/self/cmdline", "rb") as fh:
                argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
        except OSError:
            argv = []
        # BILEVEL_STAGE: exported by bilevel_asr.sh's run_stage, so a process is counted in the stage
        # that started it, not in the one whose log line came last
        line = json.dumps({"t": time.time(), "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
                           "stage": os.environ.get("BILEVEL_STAGE"), "argv": argv}) + "\n"
        # one O_APPEND write per line: concurrent processes do not interleave a line
        fd = os.open(_TRACE_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    try:
        _record()
    except OSError:  # a trace must never break the traced program
        pass
