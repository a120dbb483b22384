"""The embedded recipe end to end in its small setting (stages 1-16, HF upload as a dry run),
plus the error paths: a stage run before its inputs exist, and a rerun after a failure."""
from __future__ import annotations

import re
import subprocess
import time
import zipfile

import pytest
import yaml
from conftest import output, run_recipe

# mini_synth's "all" (run.sh --all_systems): the four systems with the CPC and with the BiRQ lower
# level, and ESPnet's own HuBERT PT+FT (scripts/hubert_ptft.sh) as the reference row
SYSTEMS = ("supervised", "ptft", "just", "bljust", "birq_ptft", "birq_just", "birq_bljust", "hubert_ptft")


@pytest.mark.slow
def test_small_end_to_end(recipe_copy):
    d = recipe_copy("mini_synth")
    start = time.time()
    proc = run_recipe(d, "--small", "true")
    elapsed = time.time() - start
    assert proc.returncode == 0, output(proc)[-4000:]
    assert "finished stages 1-10000" in proc.stderr
    print(f"mini_synth --small true: {elapsed:.0f} s")

    # a CI-sized run writes RESULTS_small.md and never touches the real RESULTS.md
    assert not (d / "RESULTS.md").exists()
    results = (d / "RESULTS_small.md").read_text()
    assert results.splitlines()[0].startswith("<!-- Generated")
    assert "egs2/mini_synth/asr1/run.sh --small true" in results
    table = results[results.index("## Comparison of systems"):]
    for system in SYSTEMS:
        # params, wall seconds, CPU seconds, dev/test WER/CER
        row = re.search(rf"^\| {system} \| [0-9.]+ k \| \d+ \| \d+ \|( [0-9.]+ \|){{4}}$", table, flags=re.M)
        assert row, f"no comparison row for {system}:\n{table}"
        assert f"## {system}: asr_{system}_raw_char" in results

    exp = d / "exp_small"
    for system in SYSTEMS:
        e = exp / f"asr_{system}_raw_char"
        assert (e / ".train.done").is_file() and (e / "train_wall_seconds").is_file()
        assert (e / "train_cpu_seconds").is_file()
        assert (e / "export" / "config.yaml").is_file() and (e / "export" / "model.pth").is_file()
        for dset in ("dev", "test"):
            ddir = e / "decode_decode_ctc_greedy_valid.cer_ctc.ave" / dset
            assert len((ddir / "text").read_text().splitlines()) == 6
            assert (ddir / "scoring" / "result.json").is_file()
        zpath = e / f"asr_{system}_raw_char_valid.cer_ctc.ave.zip"
        names = zipfile.ZipFile(zpath).namelist()
        assert "meta.yaml" in names and any(n.endswith("export/model.pth") for n in names)
        assert any(n.endswith("feats_stats.npz") for n in names)
        hf = e / "hf_upload"
        card = (hf / "README.md").read_text()
        assert card.startswith("---\n") and "## Results" in card and f"system **{system}**" in card
        assert (hf / "meta.yaml").is_file()
        staged = sorted(str(p.relative_to(hf)) for p in hf.rglob("*") if p.is_file())
        assert sorted(names + ["README.md"]) == staged, "hf_upload must hold exactly the pack + card"
    assert "Penalty / weight schedule (gamma)" in (exp / "asr_bljust_raw_char" / "hf_upload" / "README.md").read_text()
    # the HuBERT reference: ESPnet's own pre-training, then a stock ESPnet ASR fine-tuning from it
    hubert_pt = yaml.safe_load((exp / "asr_hubert_pt_raw_char" / "config.yaml").read_text())
    assert hubert_pt["encoder"] == "torchaudio_hubert" and "solver" not in hubert_pt
    hubert_ft = yaml.safe_load((exp / "asr_hubert_ptft_raw_char" / "config.yaml").read_text())
    assert hubert_ft["encoder"] == "torchaudiohubert" and "solver" not in hubert_ft
    # the PT+FT systems: PT with their own loss, FT from the PT encoder after the PT run ended
    for pt_run, ssl_loss, ft_system in (("pt", "cpc", "ptft"), ("birq_pt", "birq", "birq_ptft")):
        assert (exp / f"asr_{pt_run}_raw_char" / "valid.loss_ssl.best.pth").exists()
        pt_conf = yaml.safe_load((exp / f"asr_{pt_run}_raw_char" / "config.yaml").read_text())
        assert pt_conf["solver"] == "pretrain" and pt_conf["ssl_loss"] == ssl_loss
        ft_conf = yaml.safe_load((exp / f"asr_{ft_system}_raw_char" / "config.yaml").read_text())
        assert ft_conf["solver"] == "supervised"
        assert ft_conf["init_param"] == [f"exp_small/asr_{pt_run}_raw_char/valid.loss_ssl.best.pth:encoder:encoder"]
        assert proc.stderr.index(f"stage 11: {pt_run} finished") < proc.stderr.index(f"stage 11: training {ft_system} ")
    # the joint systems: their own configs, the solver from scripts/systems.sh, the loss by family
    for system, solver, conf, ssl_loss in (("just", "weighted_sum", "weighted_sum", "cpc"),
                                           ("bljust", "bljust", "bljust", "cpc"),
                                           ("birq_just", "weighted_sum", "weighted_sum_birq", "birq"),
                                           ("birq_bljust", "bljust", "bljust_birq", "birq")):
        cfg = yaml.safe_load((exp / f"asr_{system}_raw_char" / "config.yaml").read_text())
        assert cfg["solver"] == solver and cfg["ssl_loss"] == ssl_loss, system
        assert cfg["train_unlab_data_path_and_name_and_type"], system
        assert f"conf/tiny/{conf}.yaml" in proc.stderr
    assert yaml.safe_load((exp / "asr_birq_bljust_raw_char" / "config.yaml").read_text())[
        "ssl_loss_conf"]["anchor_weight"] == 2.4  # the BiRQ block of conf/tiny/bljust_birq.yaml
    card = (exp / "asr_birq_bljust_raw_char" / "hf_upload" / "README.md").read_text()
    assert "BiRQ" in card and "Penalty / weight schedule" in card
    # the comparison plots the losses of the BL-JUST systems (solver bljust), not of the others
    cmp_dir = exp / "compare_raw_char_small"
    assert sorted(p.name for p in cmp_dir.glob("*_losses.png")) == ["birq_bljust_losses.png", "bljust_losses.png"]
    for png in ("dev_cer_vs_wall_time.png", "bljust_losses.png", "birq_bljust_losses.png"):
        assert (cmp_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![birq_bljust_losses](RESULTS_small_figures/birq_bljust_losses.png)" in results
    assert list((exp / "asr_bljust_raw_char" / "steps").glob("epoch*.jsonl"))

    # a second run does nothing expensive: every stage finds its outputs
    start = time.time()
    proc = run_recipe(d, "--small", "true", "--stop_stage", "14")
    assert proc.returncode == 0, output(proc)[-3000:]
    assert "data_small/.stage1.done exists; skipped" in proc.stderr
    assert "already trained; skipped" in proc.stderr
    assert "stage 12: exp_small/asr_bljust_raw_char/decode_decode_ctc_greedy_valid.cer_ctc.ave/test exists; skipped" \
        in proc.stderr
    assert "asr_bljust_raw_char_valid.cer_ctc.ave.zip is up to date; skipped" in proc.stderr
    assert "decoding" not in proc.stderr
    assert time.time() - start < 60


def test_stage_without_inputs_names_missing_file(recipe_copy):
    d = recipe_copy("mini_synth")
    proc = run_recipe(d, "--small", "true", "--stage", "10", "--stop_stage", "10", timeout=120)
    assert proc.returncode != 0
    assert "stage 10: required input 'data_small/token_list/char/tokens.txt' is missing" in proc.stderr
    assert "stage 5 (token list)" in proc.stderr
    proc = run_recipe(d, "--small", "true", "--stage", "3", "--stop_stage", "3", timeout=120)
    assert proc.returncode != 0
    assert "'data_small/train_labeled/wav.scp' is missing; it is produced by stage 1" in proc.stderr
    proc = run_recipe(d, "--small", "true", "--stage", "12", "--stop_stage", "12", timeout=120)
    assert proc.returncode != 0 and "exp_small/asr_supervised_raw_char/.train.done" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_rerun_after_failure_continues(recipe_copy):
    d = recipe_copy("mini_synth")
    proc = run_recipe(d, "--small", "true", "--stop_stage", "1", timeout=300)
    assert proc.returncode == 0, output(proc)
    # break one test utterance: stage 3 fails on it after formatting the other sets
    wav_scp = (d / "data_small" / "test" / "wav.scp").read_text().split()
    broken = d / wav_scp[1]
    good = broken.read_bytes()
    broken.write_bytes(b"not audio")
    proc = run_recipe(d, "--small", "true", "--stop_stage", "4", timeout=300)
    assert proc.returncode != 0
    assert "ERROR: stage 3 failed" in proc.stderr
    assert "log: exp_small/logs/stage3_format_test.log" in proc.stderr
    assert "cannot read audio" in proc.stderr
    assert "rerun with --stage 3" in proc.stderr
    assert (d / "dump_small/raw/org/train_labeled/utt2num_samples").is_file()
    assert not (d / "dump_small/raw/test").exists(), "a failed format must not leave a complete-looking dir"

    broken.write_bytes(good)
    proc = run_recipe(d, "--small", "true", "--stop_stage", "4", timeout=300)
    assert proc.returncode == 0, output(proc)
    assert "stage 1: data_small/.stage1.done exists; skipped" in proc.stderr
    assert "dump_small/raw/org/train_labeled exists; skipped" in proc.stderr
    assert "data_small/test -> dump_small/raw/test" in proc.stderr
    assert (d / "dump_small/raw/test/utt2num_samples").is_file()
    assert (d / "dump_small/raw/train_unlabeled/wav.scp").is_file()
    assert not (d / "dump_small/raw/train_unlabeled/text").exists()


@pytest.mark.slow
def test_lm_stages_and_lm_decoding(recipe_copy):
    """Stages 6-8 (LM statistics, training, perplexity) and decoding with shallow fusion."""
    d = recipe_copy("mini_synth")
    lm = ("--use_lm", "true", "--lm_config", "conf/lm_tiny.yaml")
    proc = run_recipe(d, "--small", "true", "--stop_stage", "8", *lm)
    assert proc.returncode == 0, output(proc)[-3000:]
    ppl = float((d / "exp_small/lm_lm_tiny_char/perplexity_test/ppl").read_text().split()[0])
    assert 1.0 < ppl < 100.0
    assert (d / "exp_small/lm_lm_tiny_char/valid.loss.ave.pth").exists()
    proc = run_recipe(d, "--small", "true", "--stage", "10", "--stop_stage", "13", "--system", "supervised",
                      "--inference_args", "--lm_weight 0.3 --beam_size 4", *lm)
    assert proc.returncode == 0, output(proc)[-3000:]
    ddir = d / "exp_small/asr_supervised_raw_char/decode_decode_ctc_greedy_valid.cer_ctc.ave_lm/test"
    assert len((ddir / "text").read_text().splitlines()) == 6
    log = next((d / "exp_small/decode_jobs").glob("*/*_lm/supervised/decode.1.log")).read_text()
    assert "--lm_file" in log and "--lm_weight 0.3" in log


def test_extra_unlabeled(recipe_copy):
    """run.sh --extra_unlabeled N: more unlabeled audio in its own dirs, the same labeled, dev and test sets."""
    d = recipe_copy("mini_synth")
    assert run_recipe(d, "--small", "true", "--stop_stage", "1", timeout=300).returncode == 0
    proc = run_recipe(d, "--small", "true", "--extra_unlabeled", "3", "--stop_stage", "1", timeout=300)
    assert proc.returncode == 0, output(proc)
    assert (d / "downloads" / "mini_synth_small_extra3_seed0" / ".done").is_file()

    def lines(datadir, split, name):
        return (d / datadir / split / name).read_text().splitlines()

    for split in ("train_labeled", "dev", "test"):
        assert lines("data_small_extra3", split, "wav.scp") == [
            line.replace("mini_synth_small_seed0", "mini_synth_small_extra3_seed0")
            for line in lines("data_small", split, "wav.scp")
        ]
        assert lines("data_small_extra3", split, "text") == lines("data_small", split, "text")
    unlab = {line.split()[0] for line in lines("data_small_extra3", "train_unlabeled", "wav.scp")}
    assert {line.split()[0] for line in lines("data_small", "train_unlabeled", "wav.scp")} < unlab
    assert len(unlab) == 24 + 3
    assert not (d / "data_small_extra3" / "train_unlabeled" / "text").exists()
    for bad in (("--extra_unlabeled", "x"), ("--extra_unlabeled",)):
        proc = run_recipe(d, "--small", "true", *bad, "--stop_stage", "1", timeout=60)
        assert proc.returncode == 2 and proc.stderr.count("run.sh: --extra_unlabeled") == 1, output(proc)
    proc = subprocess.run(["bash", "local/data.sh", "--small", "true", "--extra_unlabeled", "-1"], cwd=d,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--extra_unlabeled must be a non-negative integer, got '-1'" in proc.stderr
