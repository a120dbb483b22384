"""The template's named PT+FT systems and multiple seeds, on the embedded recipe (small setting).

* bestrq_ptft: PT with its own config, then FT from the PT encoder; decoded, scored and compared
  (birq_ptft, birq_just and birq_bljust are part of mini_synth's "all": test_mini_synth.py).
* --seeds "1 2": one run per seed (exp dirs ..._seed<k>) and a stage-16 table of mean ± std.
* hubert_ptft: stage 11 calls scripts/hubert_ptft.sh with the agreed arguments. The tests use a test
  double of that script (a stock espnet2.bin.asr_train run, no HuBERT) in a private scripts/ dir, so
  they check the template's side of the interface: the arguments, the artifacts it requires, and a
  stock ESPnet exp dir going through export, decoding, packing, model card and comparison.
* The option errors of all of this.

Stages 1-10 run once per module (``prepared``); each test copies their outputs into a fresh recipe
copy and starts at stage 11.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile

import pytest
import yaml
from conftest import EGS2, make_recipe_copy, output, run_recipe

DECODE = "decode_decode_ctc_greedy_valid.cer_ctc.ave"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    d = make_recipe_copy(tmp_path_factory.mktemp("prepared"), "mini_synth")
    proc = run_recipe(d, "--small", "true", "--stop_stage", "10", timeout=600)
    assert proc.returncode == 0, output(proc)[-3000:]
    return d


@pytest.fixture
def recipe(prepared, recipe_copy):
    """A fresh recipe copy holding the data, dumps, token list and statistics of ``prepared``."""
    d = recipe_copy("mini_synth")
    for name in ("data_small", "dump_small"):
        shutil.copytree(prepared / name, d / name, symlinks=True)
    shutil.copytree(prepared / "exp_small" / "asr_stats_raw_char", d / "exp_small" / "asr_stats_raw_char")
    return d


def private_scripts_dir(d, hubert_script: str = None):
    """Replace the copy's scripts/ symlink (into the repository) by a dir of its own: every template
    script except hubert_ptft.sh, which is ``hubert_script`` if given and absent otherwise."""
    scripts = d / "scripts"
    scripts.unlink()
    scripts.mkdir()
    for src in (EGS2 / "TEMPLATE" / "asr1" / "scripts").iterdir():
        if src.name != "hubert_ptft.sh":
            (scripts / src.name).symlink_to(src)
    if hubert_script is not None:
        (scripts / "hubert_ptft.sh").write_text(hubert_script)


def decoded(exp, sets=("dev", "test")):
    return all(len((exp / DECODE / s / "text").read_text().splitlines()) == 6 for s in sets)


@pytest.mark.slow
def test_bestrq_ptft_trains_pt_then_ft_and_is_compared(recipe):
    proc = run_recipe(recipe, "--small", "true", "--system", "bestrq_ptft", "--stage", "11", timeout=1200)
    assert proc.returncode == 0, output(proc)[-4000:]
    exp = recipe / "exp_small"
    results = (recipe / "RESULTS_small.md").read_text()
    pt, ft = exp / "asr_bestrq_pt_raw_char", exp / "asr_bestrq_ptft_raw_char"
    assert (pt / ".train.done").is_file() and (pt / "valid.loss_ssl.best.pth").exists()
    pt_conf = yaml.safe_load((pt / "config.yaml").read_text())
    assert pt_conf["solver"] == "pretrain" and pt_conf["ssl_loss"] == "bestrq"
    ft_conf = yaml.safe_load((ft / "config.yaml").read_text())
    assert ft_conf["solver"] == "supervised" and ft_conf["train_unlab_data_path_and_name_and_type"] in (None, [])
    assert ft_conf["init_param"] == ["exp_small/asr_bestrq_pt_raw_char/valid.loss_ssl.best.pth:encoder:encoder"]
    assert (ft / ".train.done").is_file() and (ft / "train_wall_seconds").is_file()
    assert decoded(ft) and (ft / "export" / "model.pth").is_file()
    assert "config: `conf/tiny/supervised.yaml`, PT config: `conf/tiny/pretrain_bestrq.yaml`" \
        in (ft / "RESULTS.md").read_text()
    assert "## bestrq_ptft: asr_bestrq_ptft_raw_char" in results
    assert "--system bestrq_ptft" in (pt / "run.sh").read_text()  # the PT run re-runs its system
    # the FT half starts only when its PT half is done
    assert proc.stderr.index("bestrq_pt finished") < proc.stderr.index("training bestrq_ptft ")
    assert not (exp / "asr_pt_raw_char").exists() and not (exp / "asr_ptft_raw_char").exists()
    assert re.search(r"^\| bestrq_ptft \|", results, re.M)
    # no BL-JUST system, no loss plot
    assert not list((exp / "compare_raw_char_small").glob("*_losses.png"))


@pytest.mark.slow
def test_seeds_train_one_run_per_seed_and_compare_mean_std(recipe):
    proc = run_recipe(recipe, "--small", "true", "--system", "supervised", "--seeds", "1 2",
                      "--stage", "11", timeout=600)
    assert proc.returncode == 0, output(proc)[-4000:]
    assert "finished stages 11-10000" in proc.stderr
    exp = recipe / "exp_small"
    assert not (exp / "asr_supervised_raw_char").exists()
    # stage 12's job files are per set of runs (another run.sh may decode other systems or seeds meanwhile)
    jobs = (exp / "decode_jobs" / "raw_char" / DECODE / "supervised_seeds_1_2" / "jobs.1.tsv").read_text()
    assert "asr_supervised_raw_char_seed1/" in jobs and "asr_supervised_raw_char_seed2/" in jobs
    walls = []
    for k in (1, 2):
        e = exp / f"asr_supervised_raw_char_seed{k}"
        assert yaml.safe_load((e / "config.yaml").read_text())["seed"] == k
        assert (e / ".train.done").is_file() and decoded(e)
        assert "--seeds" in (e / "run.sh").read_text()
        walls.append(int((e / "train_wall_seconds").read_text()))
        # one single-threaded training process: its CPU time is about its wall time, never far above
        assert 0 < int((e / "train_cpu_seconds").read_text()) <= 1.5 * walls[-1] + 2
        assert zipfile.ZipFile(e / f"asr_supervised_raw_char_seed{k}_valid.cer_ctc.ave.zip").namelist()
        assert "seed: " + str(k) in (e / "RESULTS.md").read_text()
        assert (e / "hf_upload" / "README.md").is_file()

    cmp_dir = exp / "compare_raw_char_small"
    md = (cmp_dir / "compare.md").read_text()
    assert ("| system | runs | params | train wall time (s) | train CPU time (s) | dev WER (%) | dev CER (%) "
            "| test WER (%) | test CER (%) |") in md
    row_re = r"^\| supervised \| 2 \| [0-9.]+ k \| \d+ ± \d+ \| \d+ ± \d+ \|( [0-9.]+ ± [0-9.]+ \|){4}$"
    assert re.search(row_re, md, flags=re.M), md
    row = json.loads((cmp_dir / "compare.json").read_text())[0]
    assert row["n"] == 2 and [r["wall_seconds"] for r in row["runs"]] == walls
    assert row["wall_seconds"] == pytest.approx(sum(walls) / 2)
    assert row["wall_seconds_std"] == pytest.approx(abs(walls[0] - walls[1]) / 2 ** 0.5)
    assert (cmp_dir / "dev_cer_vs_wall_time.png").read_bytes()[:4] == b"\x89PNG"
    results = (recipe / "RESULTS_small.md").read_text()
    assert "| supervised | 2 |" in results
    assert "run.sh --small true --system supervised --seeds '1 2' --stage 11" in results  # copy-pastable
    assert "## supervised: asr_supervised_raw_char_seed1" in results
    assert "## supervised: asr_supervised_raw_char_seed2" in results
    # the plots are copied next to the results file and embedded
    figs = recipe / "RESULTS_small_figures"
    assert sorted(p.name for p in figs.iterdir()) == ["dev_cer_vs_wall_time.png", "wer_by_system.png",
                                                      "wer_vs_cpu_time.png"]  # stage 11 records CPU time
    assert (figs / "wer_by_system.png").read_bytes() == (cmp_dir / "wer_by_system.png").read_bytes()
    assert "![wer_by_system](RESULTS_small_figures/wer_by_system.png)" in results
    assert "![wer_vs_cpu_time](RESULTS_small_figures/wer_vs_cpu_time.png)" in results

    # stage 13 of other runs (seed 1 alone) must not show the comparison of seeds 1 and 2 ...
    proc = run_recipe(recipe, "--small", "true", "--system", "supervised", "--seeds", "1",
                      "--stage", "13", "--stop_stage", "13", timeout=300)
    assert proc.returncode == 0, output(proc)[-4000:]
    results = (recipe / "RESULTS_small.md").read_text()
    assert "## supervised: asr_supervised_raw_char_seed1" in results and "seed2" not in results
    assert "| supervised |" not in results and "![" not in results
    # ... while stage 13 of the compared runs keeps it
    proc = run_recipe(recipe, "--small", "true", "--system", "supervised", "--seeds", "1 2",
                      "--stage", "13", "--stop_stage", "13", timeout=300)
    assert proc.returncode == 0, output(proc)[-4000:]
    results = (recipe / "RESULTS_small.md").read_text()
    assert "| supervised | 2 |" in results
    assert "![wer_by_system](RESULTS_small_figures/wer_by_system.png)" in results

    # stage 16 of another set of runs written to another results file has its own comparison dir:
    # it neither overwrites this one nor takes it over
    before = (cmp_dir / "compare.json").read_bytes()
    proc = run_recipe(recipe, "--small", "true", "--system", "supervised", "--seeds", "2",
                      "--stage", "16", "--results_file", "RESULTS_seed2_small.md", timeout=300)
    assert proc.returncode == 0, output(proc)[-4000:]
    other = exp / "compare_raw_char_seed2_small"
    assert json.loads((other / "compare.json").read_text())[0]["exp"].endswith("asr_supervised_raw_char_seed2")
    assert (cmp_dir / "compare.json").read_bytes() == before
    other_results = (recipe / "RESULTS_seed2_small.md").read_text()
    assert "| supervised |" in other_results and "seed1" not in other_results
    assert "| supervised | 2 |" in (recipe / "RESULTS_small.md").read_text()

    # CTC best-path decoding of the same models (decode_many, its own inference tag), scored like the rest
    proc = run_recipe(recipe, "--small", "true", "--system", "supervised", "--seeds", "1 2", "--stage", "12",
                      "--stop_stage", "13", "--inference_config", "conf/decode_ctc_bestpath.yaml", timeout=300)
    assert proc.returncode == 0, output(proc)[-4000:]
    bp = "decode_decode_ctc_bestpath_valid.cer_ctc.ave"
    assert "CTC best path" in (exp / "decode_jobs" / "raw_char" / bp / "supervised_seeds_1_2" / "decode.1.log").read_text()
    for k in (1, 2):
        e = exp / f"asr_supervised_raw_char_seed{k}"
        for dset in ("dev", "test"):
            keys = [line.split()[0] for line in (e / bp / dset / "text").read_text().splitlines()]
            assert keys == [line.split()[0] for line in (e / DECODE / dset / "text").read_text().splitlines()]
            assert json.loads((e / bp / dset / "scoring" / "result.json").read_text())
        assert "conf/decode_ctc_bestpath.yaml" in (e / "RESULTS.md").read_text()


# A test double of scripts/hubert_ptft.sh: records its arguments, fakes the PT half (a wall time of
# 5 s) and fine-tunes a stock ESPnet model with espnet2.bin.asr_train, as the real script's FT half.
FAKE_HUBERT_PTFT = r"""#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2154  # the options are assigned by name in the loop below
set -euo pipefail
all_args=("$@")
bpemodel=none; pt_args=""; ft_args=""
while [ $# -gt 0 ]; do printf -v "${1#--}" '%s' "$2"; shift 2; done
mkdir -p "${pt_exp}" "${ft_exp}"
printf '%s\n' "${all_args[@]}" > "${ft_exp}/hubert_ptft_args.txt"
echo 5 > "${pt_exp}/train_wall_seconds"; touch "${pt_exp}/.train.done"
start=$(date +%s)
# shellcheck disable=SC2086
"${python}" -m espnet2.bin.asr_train --use_preprocessor true --token_type "${token_type}" \
    --token_list "${token_list}" --bpemodel "${bpemodel}" --config "${ft_config}" \
    --train_data_path_and_name_and_type "${train_dir}/wav.scp,speech,sound" \
    --train_data_path_and_name_and_type "${train_dir}/text,text,text" \
    --valid_data_path_and_name_and_type "${valid_dir}/wav.scp,speech,sound" \
    --valid_data_path_and_name_and_type "${valid_dir}/text,text,text" \
    --train_shape_file "${asr_stats_dir}/train/speech_shape" \
    --train_shape_file "${asr_stats_dir}/train/text_shape.${token_type}" \
    --valid_shape_file "${asr_stats_dir}/valid/speech_shape" \
    --valid_shape_file "${asr_stats_dir}/valid/text_shape.${token_type}" \
    --fold_length 80000 --fold_length 150 --ngpu "${ngpu}" --output_dir "${ft_exp}" ${ft_args} \
    > "${ft_exp}/train.log" 2>&1
echo $(( $(date +%s) - start )) > "${ft_exp}/train_wall_seconds"
touch "${ft_exp}/.train.done"
"""


def stock_config(recipe) -> str:
    """conf/tiny/supervised.yaml without the options that only the bilevel task knows."""
    conf = yaml.safe_load((recipe / "conf" / "tiny" / "supervised.yaml").read_text())
    for key in ("solver", "solver_conf", "ssl_loss", "ssl_loss_conf", "optim2", "optim2_conf"):
        conf.pop(key, None)
    (recipe / "conf" / "stock_ft.yaml").write_text(yaml.safe_dump(conf))
    return "conf/stock_ft.yaml"


@pytest.mark.slow
def test_hubert_ptft_interface_and_stock_exp_dir_through_stage_16(recipe):
    private_scripts_dir(recipe, FAKE_HUBERT_PTFT)
    proc = run_recipe(recipe, "--small", "true", "--system", "hubert_ptft", "--seeds", "3", "--stage", "11",
                      "--hubert_ft_config", stock_config(recipe), "--asr_args", "--num_workers 0", timeout=600)
    assert proc.returncode == 0, output(proc)[-4000:]
    exp = recipe / "exp_small"
    pt, ft = exp / "asr_hubert_pt_raw_char_seed3", exp / "asr_hubert_ptft_raw_char_seed3"
    args = (ft / "hubert_ptft_args.txt").read_text().splitlines()
    opts = dict(zip(args[::2], args[1::2]))
    assert len(args) == 2 * len(opts)
    assert opts == {
        "--python": "python3", "--train_dir": "dump_small/raw/train_labeled",
        "--unlab_dir": "dump_small/raw/train_unlabeled", "--valid_dir": "dump_small/raw/dev",
        "--token_list": "data_small/token_list/char/tokens.txt", "--token_type": "char",
        "--asr_stats_dir": "exp_small/asr_stats_raw_char", "--pt_config": "conf/tiny/hubert_pretrain.yaml",
        "--ft_config": "conf/stock_ft.yaml", "--pt_exp": str(pt.relative_to(recipe)),
        "--ft_exp": str(ft.relative_to(recipe)), "--ngpu": "0",
        "--pt_args": "--num_workers 0 --seed 3", "--ft_args": "--num_workers 0 --seed 3",
    }
    assert "solver" not in yaml.safe_load((ft / "config.yaml").read_text())
    exported = yaml.safe_load((ft / "export" / "config.yaml").read_text())
    assert exported["model"] == "espnet" and exported["seed"] == 3
    assert decoded(ft)
    assert "PT config: `conf/tiny/hubert_pretrain.yaml`, seed: 3" in (ft / "RESULTS.md").read_text()
    assert (ft / "asr_hubert_ptft_raw_char_seed3_valid.cer_ctc.ave.zip").is_file()
    card = (ft / "hf_upload" / "README.md").read_text()
    assert "system **hubert_ptft**" in card and "stock ESPnet `ASRTask`" in card
    row = json.loads((exp / "compare_raw_char_small" / "compare.json").read_text())[0]
    assert row["system"] == "hubert_ptft"  # one seed: the single-run table
    assert row["wall_seconds"] == 5 + int((ft / "train_wall_seconds").read_text())

    # a script that leaves no model is named as breaking the contract
    shutil.rmtree(ft)
    (recipe / "scripts" / "hubert_ptft.sh").write_text("#!/usr/bin/env bash\nexit 0\n")
    proc = run_recipe(recipe, "--small", "true", "--system", "hubert_ptft", "--seeds", "3", "--stage", "11",
                      "--stop_stage", "11", "--hubert_ft_config", stock_config(recipe), timeout=120)
    assert proc.returncode != 0
    assert f"scripts/hubert_ptft.sh finished but left no {ft.relative_to(recipe)}/config.yaml" in proc.stderr


def test_system_and_seed_option_errors(recipe_copy):
    d = recipe_copy("mini_synth")
    known = "use all or any of: supervised just bljust birq_just birq_bljust ptft bestrq_ptft birq_ptft hubert_ptft"
    for opts, message in (
        (("--system", "bestrq_ptft hubert"), f"--system: unknown system 'hubert' ({known})"),
        (("--system", "birq_ptft birq_ptft"), "--system names a system twice"),
        (("--all_systems", "supervised blj"), f"--all_systems: unknown system 'blj' ({known})"),
        (("--system", "all", "--all_systems", "just just"), "--all_systems names a system twice: just just"),
        (("--all_systems", ""), "--all_systems is empty"),
        (("--seeds", "1 two"), "--seeds must be non-negative integers"),
        (("--seeds", "4 4"), "--seeds names a seed twice: 4 4"),
        (("--system", "bestrq_ptft", "--bestrq_pt_config", "conf/nope.yaml"),
         "config of 'bestrq_pt' not found: conf/nope.yaml (see --bestrq_pt_config)"),
        (("--system", "hubert_ptft", "--feats_type", "fbank"),
         "--system hubert_ptft supports --feats_type raw only"),
    ):
        proc = run_recipe(d, "--small", "true", *opts, timeout=60)
        assert proc.returncode != 0 and message in proc.stderr, (opts, output(proc))
        assert "Traceback" not in proc.stderr
    private_scripts_dir(d)  # no scripts/hubert_ptft.sh
    proc = run_recipe(d, "--small", "true", "--system", "supervised hubert_ptft", timeout=60)
    assert proc.returncode != 0, output(proc)
    assert "--system hubert_ptft needs scripts/hubert_ptft.sh" in proc.stderr
    assert "drop hubert_ptft from --system" in proc.stderr
    # stages after training do not need the script
    proc = run_recipe(d, "--small", "true", "--system", "hubert_ptft", "--stage", "12", "--stop_stage", "12",
                      timeout=60)
    assert "needs scripts/hubert_ptft.sh" not in proc.stderr


def test_help_lists_the_systems_and_the_recipe_configs():
    proc = run_recipe(EGS2 / "mini_synth" / "asr1", "--help", timeout=60)
    assert proc.returncode == 0, output(proc)
    out = proc.stdout
    # the --system help names every system of scripts/systems.sh, in its order
    known = subprocess.run(["bash", "-c", f'. "{EGS2}/TEMPLATE/asr1/scripts/systems.sh"; echo "$KNOWN_SYSTEMS"'],
                           capture_output=True, text=True, timeout=30).stdout.strip()
    assert known.startswith("supervised just bljust") and f"any of: {known} (scripts/systems.sh)" in out
    assert re.search(r"--seeds .*mean ± std.*\[\]", out)
    for name, conf in (("bestrq_pt_config", "pretrain_bestrq"), ("birq_pt_config", "pretrain_birq"),
                       ("hubert_pt_config", "hubert_pretrain"), ("hubert_ft_config", "hubert_finetune"),
                       ("birq_just_config", "weighted_sum_birq"), ("birq_bljust_config", "bljust_birq")):
        assert re.search(rf"--{name} .*\(now: conf/mini/{conf}\.yaml\)", out), name
