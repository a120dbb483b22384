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
def test_budget_curve_shares_pt_run(recipe_copy):
    recipe = recipe_copy("mini_synth")
    # one PT+FT system (CI time): birq_ptft, whose PT run (birq_pt) comes from scripts/systems.sh
    proc = _run(recipe, "--small", "true", "--budgets", "6 12", "--systems", "birq_ptft")
    assert proc.returncode == 0, output(proc)[-3000:]
    src = recipe / "data_budget_small" / "src"
    small = set((src / "train_labeled_n6" / "wav.scp").read_text().split("\n"))
    large = set((src / "train_labeled_n12" / "wav.scp").read_text().split("\n"))
    assert len(small - {""}) == 6 and len(large - {""}) == 12 and small <= large
    # the corpus was made with exactly the largest budget of labeled utterances
    assert len((src / "train_labeled" / "wav.scp").read_text().splitlines()) == 12
    exp = recipe / "exp_budget_small"
    # PT depends only on unlabeled audio: trained once (largest budget), linked for the smaller one
    assert (exp / "asr_birq_pt_raw_char_n12" / ".train.done").is_file()
    assert os.readlink(exp / "asr_birq_pt_raw_char_n6") == "asr_birq_pt_raw_char_n12"
    assert not (exp / "asr_pt_raw_char_n12").exists()
    for n in (6, 12):
        assert (exp / f"asr_birq_ptft_raw_char_n{n}" / ".train.done").is_file()
        # each budget trained on its own subset, with its own statistics
        cfg = (exp / f"asr_birq_ptft_raw_char_n{n}" / "config.yaml").read_text()
        assert f"train_labeled_n{n}/" in cfg and f"asr_stats_raw_char_n{n}/" in cfg
    # one shared char token list (from the largest labeled set)
    table = json.loads((exp / "label_budget" / "label_budget.json").read_text())
    assert set(table) == {"birq_ptft"} and set(table["birq_ptft"]) == {"6", "12"}
    for n in ("6", "12"):
        assert table["birq_ptft"][n]["test"]["wer"][0] is not None
    assert (exp / "label_budget" / "label_budget_wer.png").stat().st_size > 1000
    md = (exp / "label_budget" / "label_budget.md").read_text()
    assert md.splitlines()[0].startswith("| labeled utts | birq_ptft dev WER")
    # the recipe-level copy: command, the same table, the plot next to it
    results = (recipe / "RESULTS_label_budget_small.md").read_text()
    assert 'local/label_budget.sh --budgets "6 12" --systems "birq_ptft" --small true' in results and md in results
    assert "![label_budget_wer](RESULTS_label_budget_small_figures/label_budget_wer.png)" in results
    assert ((recipe / "RESULTS_label_budget_small_figures" / "label_budget_wer.png").read_bytes()
            == (exp / "label_budget" / "label_budget_wer.png").read_bytes())
    # rerun: everything is already done, nothing retrained
    before = (exp / "asr_birq_ptft_raw_char_n6" / "train_wall_seconds").stat().st_mtime
    proc = _run(recipe, "--small", "true", "--budgets", "6 12", "--systems", "birq_ptft")
    assert proc.returncode == 0, output(proc)[-3000:]
    assert (exp / "asr_birq_ptft_raw_char_n6" / "train_wall_seconds").stat().st_mtime == before
