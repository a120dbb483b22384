"""bench/cli_startup.py: the traced recipe run (bench/pytrace/sitecustomize.py) and the per-stage
start-up table made from it. The probes themselves are measurements, not tested here."""
import json
import sys
from pathlib import Path

import pytest



def test_entry_of_names_module_script_or_command_string(cli_startup):
    assert cli_startup.entry_of(["python", "-m", "espnet2.bin.pack", "asr"]) == "espnet2.bin.pack"
    assert cli_startup.entry_of(["python", "-u", "-m", "espnet_bilevel.bin.score"]) == "espnet_bilevel.bin.score"
    assert cli_startup.entry_of(["python", "pyscripts/data_tools.py", "filter"]) == "data_tools.py"
    assert cli_startup.entry_of(["python", "-c", "import torch"]) == "-c"
    assert cli_startup.entry_of(["python"]) is None


def test_busy_time_counts_overlapping_intervals_once(cli_startup):
    assert cli_startup.busy_time([]) == 0.0
    assert cli_startup.busy_time([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0)]) == pytest.approx(4.0)
    assert cli_startup.busy_time([(5.0, 6.0), (0.0, 10.0)]) == pytest.approx(10.0)


def write_trace(d: Path, processes, log_lines):
    d.mkdir()
    (d / "processes.jsonl").write_text("".join(json.dumps({"t": t, "pid": 1, "ppid": 0, "cwd": "/",
                                                           "argv": argv}) + "\n" for t, argv in processes))
    (d / "run.log").write_text("".join(f"{t:.3f} {text}\n" for t, text in log_lines))


def test_stage_rows_from_a_trace(cli_startup, tmp_path):
    py = "/venv/bin/python"
    write_trace(tmp_path / "tr", processes=[
        (101.0, [py, "-m", "espnet_bilevel.bin.synth_corpus", "--out", "x"]),
        (110.0, [py, "pyscripts/data_tools.py", "format"]),
        (110.5, [py, "-m", "espnet_bilevel.bin.validate_data_dir", "d"]),
        (200.0, [py, "-m", "espnet_bilevel.bin.bilevel_asr_train", "--config", "a"]),   # two side by side
        (200.5, [py, "-m", "espnet_bilevel.bin.bilevel_asr_train", "--config", "b"]),
        (300.0, [py, "-m", "espnet_bilevel.bin.bilevel_asr_train", "--config", "c"]),   # a later wave
        (301.0, [py, "-c", "print(1)"]),
    ], log_lines=[
        (100.0, "2026-12-07T01:00:00 (bilevel_asr.sh:449:main) stage 1: data preparation"),
        (105.0, "2026-12-07T01:00:05 (bilevel_asr.sh:480:main) stage 2: no --speed_perturb_factors; skipped"),
        (105.1, "2026-12-07T01:00:05 (bilevel_asr.sh:508:format_set) stage 3: data/a -> dump/a"),
        (111.0, "2026-12-07T01:00:06 (bilevel_asr.sh:508:format_set) stage 3: data/b -> dump/b"),
        (150.0, "2026-12-07T01:00:50 (bilevel_asr.sh:900:main) stage 11: training"),
        (320.0, "2026-12-07T01:03:40 (bilevel_asr.sh:1216:main) finished stages 1-11"),
    ])
    processes, stages, run_end = cli_startup.read_trace(tmp_path / "tr")
    assert [s for s, _ in stages] == ["1", "2", "3", "11"]   # the first line of each stage
    assert run_end == pytest.approx(320.0)
    startup = {"synth_corpus --help": 0.2, "data_tools (+ numpy, soundfile)": 0.3,
               "validate_data_dir --help": 0.1, "bilevel_asr_train --help": 20.0}
    rows = {r["stage"]: r for r in cli_startup.stage_rows(processes, stages, run_end, startup)}
    assert set(rows) == {"1", "3", "11"}                      # stage 2 started no Python
    assert rows["1"]["count"] == {"synth_corpus --help": 1}
    assert rows["1"]["stage_wall"] == pytest.approx(5.0)
    assert rows["3"]["count"] == {"data_tools (+ numpy, soundfile)": 1, "validate_data_dir --help": 1}
    assert rows["3"]["stage_wall"] == pytest.approx(150.0 - 105.1)
    t = rows["11"]
    assert t["count"] == {"bilevel_asr_train --help": 3}
    assert t["unmatched"] == ["-c print(1)"] and t["processes"] == 4
    assert t["startup_sum"] == pytest.approx(60.0)
    # [200, 220) and [200.5, 220.5) overlap: 20.5 s; the third wave [300, 320): 20 s
    assert t["startup_wall"] == pytest.approx(40.5)
    assert t["stage_wall"] == pytest.approx(170.0)


def test_read_trace_names_the_bad_file(cli_startup, tmp_path):
    d = tmp_path / "tr"
    write_trace(d, processes=[], log_lines=[(1.0, "no stage line here")])
    with pytest.raises(SystemExit, match=r"run\.log has no stage lines"):
        cli_startup.read_trace(d)
    (d / "processes.jsonl").write_text("{not json\n")
    with pytest.raises(SystemExit, match=r"processes\.jsonl:1: not a trace record"):
        cli_startup.read_trace(d)
    with pytest.raises(SystemExit, match=r"missing"):
        cli_startup.read_trace(tmp_path / "nothing")


def test_trace_run_records_every_python_start(cli_startup, tmp_path, capsys):
    """The real tracer: a shell command that starts Python twice (once in the background) is traced."""
    script = (f'echo "x (bilevel_asr.sh:1:main) stage 1: one"; export BILEVEL_STAGE=1; "{sys.executable}" -c "pass" & '
              f'"{sys.executable}" -m json.tool --help > /dev/null; wait; '
              f'echo "x (bilevel_asr.sh:2:main) stage 3: two"')
    rc = cli_startup.trace_run(tmp_path / "tr", ["bash", "-c", script])
    assert rc == 0
    records = [json.loads(line) for line in (tmp_path / "tr/processes.jsonl").read_text().splitlines()]
    assert sorted(r["argv"][1:] for r in records) == [["-c", "pass"], ["-m", "json.tool", "--help"]]
    assert all(r["argv"][0] == sys.executable and r["stage"] == "1" for r in records)
    processes, stages, _ = cli_startup.read_trace(tmp_path / "tr")
    assert [s for s, _ in stages] == ["1", "3"]
    assert all(cli_startup.stage_of(p["t"], stages) == "1" for p in processes)
    assert "stage 3: two" in capsys.readouterr().out            # the run's output is echoed
    info = json.loads((tmp_path / "tr/command.json").read_text())
    assert info["returncode"] == 0 and info["command"][0] == "bash"
    with pytest.raises(SystemExit, match="not empty"):              # never overwrite a trace
        cli_startup.trace_run(tmp_path / "tr", ["true"])


def test_recorded_stage_wins_over_log_order(cli_startup, tmp_path):
    """bilevel_asr.sh exports BILEVEL_STAGE: work a stage does before its first log line (stage 10
    splits its key lists, then logs) counts in that stage, and the stage starts with it."""
    py = "/venv/bin/python"
    d = tmp_path / "tr"
    d.mkdir()
    records = [(100.0, "9", [py, "pyscripts/data_tools.py", "x"]),   # hypothetical: stage 9 work
               (101.0, "10", [py, "pyscripts/data_tools.py", "split"]),
               (102.0, "10", [py, "-m", "espnet_bilevel.bin.bilevel_asr_train", "--collect_stats", "true"])]
    (d / "processes.jsonl").write_text("".join(json.dumps({"t": t, "stage": s, "argv": a}) + "\n"
                                               for t, s, a in records))
    (d / "run.log").write_text("99.000 x (bilevel_asr.sh:700:main) stage 9: --use_lm false; skipped\n"
                               "103.000 x (bilevel_asr.sh:746:main) stage 10: statistics with 2 job(s)\n"
                               "120.000 x (bilevel_asr.sh:777:main) stage 10: done\n")
    processes, stages, run_end = cli_startup.read_trace(d)
    startup = {"data_tools (+ numpy, soundfile)": 0.1, "bilevel_asr_train --help": 9.0}
    rows = {r["stage"]: r for r in cli_startup.stage_rows(processes, stages, run_end, startup)}
    assert rows["9"]["count"] == {"data_tools (+ numpy, soundfile)": 1}
    assert rows["10"]["count"] == {"data_tools (+ numpy, soundfile)": 1, "bilevel_asr_train --help": 1}
    assert [r["stage"] for r in cli_startup.stage_rows(processes, stages, run_end, startup)] == ["9", "10"]
    assert rows["9"]["stage_wall"] == pytest.approx(2.0)       # 99 -> 101, where stage 10's work began
    assert rows["10"]["stage_wall"] == pytest.approx(19.0)     # 101 -> 120
