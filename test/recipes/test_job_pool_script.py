"""egs2/TEMPLATE/asr1/scripts/job_pool.sh: a slot is reused as soon as any job ends."""
import subprocess

from conftest import EGS2

SCRIPT = EGS2 / "TEMPLATE" / "asr1" / "scripts" / "job_pool.sh"

# job b only finishes once c and d have finished (b waits up to 30 s): with 2 slots that is possible only if c and d
# run in the slot a frees (a group-at-a-time runner would wait for b before starting c: timeout)
PROG = r"""
set -euo pipefail
. "%s"
POOL_POLL_SECONDS=0.05
job() {
    echo "start $1" >> events
    case $1 in
        b) for _ in $(seq 600); do [ -f d.done ] && break; sleep 0.05; done; [ -f c.done ] && [ -f d.done ] ;;
        bad) return 3 ;;
        *) : ;;
    esac
    # "end" is logged before the .done file exists, so b cannot log its end before d has logged its
    # own (the other order made the event order racy on a loaded machine)
    echo "end $1" >> events
    touch "$1.done"
}
failed() { echo "failed $1 status $2" >> events; }
rc=0
run_pool 2 job failed %s || rc=$?
echo "pool $rc" >> events
"""


def _run(tmp_path, items):
    proc = subprocess.run(["bash", "-c", PROG % (SCRIPT, items)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return (tmp_path / "events").read_text().splitlines()


def test_next_job_starts_when_any_job_ends(tmp_path):
    events = _run(tmp_path, "a b c d")
    assert events[-1] == "pool 0"
    assert events.index("end d") < events.index("end b")  # b waited for c and d: they ran beside it
    assert sorted(e for e in events if e.startswith("end")) == ["end a", "end b", "end c", "end d"]
    # never more than 2 at a time
    running = peak = 0
    for e in events:
        running += e.startswith("start") - e.startswith("end")
        peak = max(peak, running)
    assert peak == 2


def test_a_failure_is_reported_and_the_others_still_run(tmp_path):
    events = _run(tmp_path, "bad x y")
    assert "failed bad status 3" in events and "end x" in events and "end y" in events
    assert events[-1] == "pool 1"
