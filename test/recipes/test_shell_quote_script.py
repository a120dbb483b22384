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


def _export_run_cmd(cwd, env_extra):
    prog = f'. "{SCRIPT}"; export_run_cmd "$@"; printf "%s" "$BILEVEL_RUN_CMD"'
    env = {"PATH": "/usr/bin:/bin", **env_extra}
    proc = subprocess.run(["bash", "-c", prog, "bash", "--system", "supervised bljust", "--stage", "11"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_export_run_cmd_names_the_recipe_relative_to_the_repository(tmp_path):
    recipe = tmp_path / "repo" / "egs2" / "mycorpus" / "asr1"
    recipe.mkdir(parents=True)
    assert _export_run_cmd(recipe, {}) == "egs2/mycorpus/asr1/run.sh --system 'supervised bljust' --stage 11"
    # a wrapper's own command line (label_budget.sh sets it) wins
    assert _export_run_cmd(recipe, {"BILEVEL_RUN_CMD": "local/wrapper.sh x"}) == "local/wrapper.sh x"
