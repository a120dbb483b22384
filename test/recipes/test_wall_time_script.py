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
