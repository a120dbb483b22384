"""egs2/TEMPLATE/asr1/scripts/wall_time.sh: a failed attempt's seconds are added to the rerun's."""
import subprocess

from conftest import EGS2

SCRIPT = EGS2 / "TEMPLATE" / "asr1" / "scripts" / "wall_time.sh"


def _bash(body: str, cwd) -> str:
    # `date` is replaced by a clock the test sets through NOW
    prog = f'set -euo pipefail; . "{SCRIPT}"; date() {{ echo "$NOW"; }}\n{body}'
    proc = subprocess.run(["bash", "-c", prog], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_failed_attempt_counts_toward_the_finished_total(tmp_path):
    (tmp_path / "exp").mkdir()
    out = _bash("""
NOW=100; wall_time_begin exp; NOW=130; wall_time_failed exp; cat exp/.train_wall_partial
NOW=500; wall_time_begin exp; NOW=512; total=$(wall_time_done exp); echo "$total"
write_seconds exp/train_wall_seconds "$total"
""", tmp_path)
    assert out.split() == ["30", "42"]  # 30 s failed + 12 s rerun
    assert (tmp_path / "exp" / "train_wall_seconds").read_text() == "42\n"
    assert not (tmp_path / "exp" / ".train_wall_partial").exists()
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["train_wall_seconds"]  # no *.tmp left


def test_first_attempt_without_partial(tmp_path):
    (tmp_path / "exp").mkdir()
    assert _bash("NOW=7; wall_time_begin exp; NOW=10; wall_time_done exp", tmp_path) == "3"


def test_times_parsing():
    assert _bash('_times_ms 1m2.345s; _times_ms 0m0.080s; _times_ms 12m0.000s', ".").split() == \
        ["62345", "80", "720000"]


def test_cpu_time_counts_the_children_and_a_failed_attempt(tmp_path):
    (tmp_path / "exp").mkdir()
    # attempt 1 burns CPU in a child process and fails; attempt 2 only sleeps (no CPU) and finishes
    out = _bash("""
NOW=0; wall_time_begin exp
bash -c 'i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done'
wall_time_failed exp; cat exp/.train_cpu_partial_ms
wall_time_begin exp; sleep 0.2; cpu_time_done exp exp/train_cpu_seconds; cat exp/train_cpu_seconds
""", tmp_path)
    partial_ms, total = map(int, out.split())
    assert partial_ms > 300  # the busy loop's CPU time was seen
    assert abs(total - partial_ms / 1000) <= 0.6  # the rerun adds ~0 s of CPU to the failed attempt's
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == [".train_wall_partial", "train_cpu_seconds"]
