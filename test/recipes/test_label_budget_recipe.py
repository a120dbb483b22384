"""egs2/mini_synth/asr1/local/label_budget.sh: nested labeled subsets, one recipe run per budget
with the PT run shared, and the WER-vs-budget table and plot (CI-sized corpus, tiny configs)."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import output


def _run(recipe, *args, timeout=1800):
    env = dict(os.environ)
    env.pop("BILEVEL_RUN_CMD", None)
    return subprocess.run(["local/label_budget.sh", *args], cwd=recipe, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_bad_budget_or_system_is_rejected_before_any_work(recipe_copy):
    recipe = recipe_copy("mini_synth")
    proc = _run(recipe, "--budgets", "10 x")
    assert proc.returncode == 2
    assert "--budgets: 'x' is not a positive integer" in output(proc)
    proc = _run(recipe, "--budgets", "10", "--systems", "ptft bljsut")
    assert proc.returncode == 2
    assert "--systems: unknown system 'bljsut' (any of: supervised just bljust" in output(proc)
    assert not (recipe / "data_budget").exists() and not (recipe / "downloads").exists()


@pytest.mark.slow
def test_budget_curve_shares_pt_run_per_seed(recipe_copy):
    recipe = recipe_copy("mini_synth")
    # one PT+FT system (CI time): birq_ptft, whose PT run (birq_pt) comes from scripts/systems.sh;
    # two training seeds, so every cell is a mean over two runs and the PT run is shared per seed
    args = ["--small", "true", "--budgets", "6 12", "--systems", "birq_ptft", "--seeds", "1 2"]
    proc = _run(recipe, *args)
    assert proc.returncode == 0, output(proc)[-3000:]
    src = recipe / "data_budget_small" / "src"
    small = set((src / "train_labeled_n6" / "wav.scp").read_text().split("\n"))
    large = set((src / "train_labeled_n12" / "wav.scp").read_text().split("\n"))
    assert len(small - {""}) == 6 and len(large - {""}) == 12 and small <= large
    # the corpus was made with exactly the largest budget of labeled utterances, and src names it
    assert len((src / "train_labeled" / "wav.scp").read_text().splitlines()) == 12
    assert (src / "corpus").read_text() == "downloads/mini_synth_budget12_small_seed0\n"
    exp = recipe / "exp_budget_small"
    for k in (1, 2):
        # PT depends only on unlabeled audio: trained once per seed (largest budget), linked for the smaller one
        assert (exp / f"asr_birq_pt_raw_char_n12_seed{k}" / ".train.done").is_file()
        assert os.readlink(exp / f"asr_birq_pt_raw_char_n6_seed{k}") == f"asr_birq_pt_raw_char_n12_seed{k}"
        for n in (6, 12):
            run = exp / f"asr_birq_ptft_raw_char_n{n}_seed{k}"
            assert (run / ".train.done").is_file()
            # each budget trained on its own subset, with its own statistics, with the seed asked for
            cfg = (run / "config.yaml").read_text()
            assert f"train_labeled_n{n}/" in cfg and f"asr_stats_raw_char_n{n}/" in cfg
            assert f"\nseed: {k}\n" in cfg
    assert not (exp / "asr_pt_raw_char_n12_seed1").exists() and not (exp / "asr_birq_ptft_raw_char_n6").exists()
    # one shared char token list (from the largest labeled set)
    table = json.loads((exp / "label_budget" / "label_budget.json").read_text())
    assert set(table) == {"birq_ptft"} and set(table["birq_ptft"]) == {"6", "12"}
    for n in ("6", "12"):
        mean, _, runs = table["birq_ptft"][n]["test"]["wer"]
        assert mean is not None and runs == 2
    assert (exp / "label_budget" / "label_budget_wer.png").stat().st_size > 1000
    md = (exp / "label_budget" / "label_budget.md").read_text()
    assert "| labeled utts | birq_ptft test WER | runs per cell |" in md
    assert "| labeled utts | birq_ptft dev WER | birq_ptft dev CER |" in md
    # PT+FT's training CPU time counts its (shared) PT run at every budget
    for n in ("6", "12"):
        cpu = [float((exp / f"asr_birq_pt_raw_char_n12_seed{k}" / "train_cpu_seconds").read_text())
               + float((exp / f"asr_birq_ptft_raw_char_n{n}_seed{k}" / "train_cpu_seconds").read_text())
               for k in (1, 2)]
        assert table["birq_ptft"][n]["cpu_seconds"][0] == pytest.approx(sum(cpu) / 2)
    assert "| labeled utts | birq_ptft train CPU (s) |" in md
    # the recipe-level copy: command, seeds, the same table, the plot next to it
    results = (recipe / "RESULTS_label_budget_small.md").read_text()
    assert ('local/label_budget.sh --budgets "6 12" --systems "birq_ptft" --small true --seeds "1 2"' in results
            and md in results)
    assert "- training seeds: 1 2; every cell is mean ± std over the 2 seeds" in results
    assert "![label_budget_wer](RESULTS_label_budget_small_figures/label_budget_wer.png)" in results
    assert ((recipe / "RESULTS_label_budget_small_figures" / "label_budget_wer.png").read_bytes()
            == (exp / "label_budget" / "label_budget_wer.png").read_bytes())
    # rerun: everything is already done, nothing retrained
    before = (exp / "asr_birq_ptft_raw_char_n6_seed1" / "train_wall_seconds").stat().st_mtime
    proc = _run(recipe, *args)
    assert proc.returncode == 0, output(proc)[-3000:]
    assert (exp / "asr_birq_ptft_raw_char_n6_seed1" / "train_wall_seconds").stat().st_mtime == before


def test_bad_training_seed_is_rejected_before_any_work(recipe_copy):
    recipe = recipe_copy("mini_synth")
    proc = _run(recipe, "--budgets", "10", "--seeds", "1 x")
    assert proc.returncode == 2
    assert "--seeds: 'x' is not a non-negative integer" in output(proc)
    assert not (recipe / "data_budget").exists() and not (recipe / "downloads").exists()


def test_other_corpus_than_the_one_in_data_budget_is_refused(recipe_copy):
    # data_budget/src made for a max budget of 100 (corpus seed 0); asking for 200 or another corpus
    # seed would reuse its sets and finished runs under another name, so it stops before any work
    recipe = recipe_copy("mini_synth")
    src = recipe / "data_budget" / "src"
    src.mkdir(parents=True)
    (src / "corpus").write_text("downloads/mini_synth_budget100_seed0\n")
    for args in (["--budgets", "25 200"], ["--budgets", "100", "--seed", "1"]):
        proc = _run(recipe, *args)
        assert proc.returncode == 1
        err = output(proc)
        assert "ERROR: data_budget/src holds the sets of downloads/mini_synth_budget100_seed0" in err
        assert "a curve uses one corpus; move data_budget/ dump_budget/ exp_budget/ aside" in err
    assert not (recipe / "downloads").exists() and not (recipe / "exp_budget").exists()
