"""egs2/TEMPLATE/asr1/scripts/shell_quote.sh: command lines written for users to copy come back as
the same words."""
import subprocess

from conftest import EGS2

SCRIPT = EGS2 / "TEMPLATE" / "asr1" / "scripts" / "shell_quote.sh"

ARGS = ["--system", "supervised bljust", "--solver_conf", 'penalty_schedule_conf={"gamma": 1.0}',
        "", "it's", "plain=1,2", "$HOME", "a;b", "--seeds", "1"]


def test_quoted_line_round_trips_through_the_shell():
    prog = f'. "{SCRIPT}"; line=$(quote_args "$@"); printf "%s\\n" "$line"; eval "set --$line"; printf "<%s>" "$@"'
    proc = subprocess.run(["bash", "-c", prog, "bash", *ARGS], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    line, words = proc.stdout.split("\n", 1)
    assert words == "".join(f"<{a}>" for a in ARGS)
    # plain words stay bare (readable), the others are quoted
    assert line.startswith(" --system 'supervised bljust' --solver_conf ")
    assert line.endswith(" plain=1,2 '$HOME' 'a;b' --seeds 1")
