"""Static checks of every shell script under egs2/ and the --help / option handling of each recipe."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from conftest import EGS2, RECIPES, output, run_recipe

# scripts of the repository (not the per-experiment run.sh files a recipe run generates under exp*/)
SCRIPTS = sorted(p for p in EGS2.rglob("*.sh") if not p.is_symlink()
                 and not any(part.split("_")[0] in ("exp", "data", "dump", "downloads")
                             for part in p.relative_to(EGS2).parts[2:-1]))


def test_there_are_scripts():
    names = {p.name for p in SCRIPTS}
    assert {"bilevel_asr.sh", "run.sh", "data.sh", "cmd.sh", "path.sh", "run_local.sh", "run_slurm.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(EGS2)))
def test_bash_syntax(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(EGS2)))
def test_shellcheck(script):
    proc = subprocess.run(["shellcheck", "-x", script.name], cwd=script.parent, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def template_option_names():
    text = (EGS2 / "TEMPLATE" / "asr1" / "bilevel_asr.sh").read_text()
    block = text[text.index("OPTION_SPEC=("):text.index("BOOL_OPTIONS=")]
    return re.findall(r'^\s+"([a-z_0-9]+)\|', block, flags=re.M)


def test_asr_sh_option_names_are_supported():
    names = set(template_option_names())
    asr_sh = """stage stop_stage ngpu num_nodes nj inference_nj gpu_inference feats_type audio_format fs token_type
        nbpe bpemode asr_config inference_config lm_config use_lm lm_train_text bpe_train_text speed_perturb_factors
        train_set valid_set test_sets asr_tag asr_exp inference_asr_model pretrained_model ignore_init_mismatch
        skip_packing skip_upload_hf hf_repo asr_args inference_args""".split()
    ours = """train_unlab_set system pt_config ft_config just_config bljust_config supervised_config solver_args
        hf_dry_run local_data_dir seeds bestrq_pt_config birq_pt_config hubert_pt_config hubert_ft_config""".split()
    assert set(asr_sh) <= names, set(asr_sh) - names
    assert set(ours) <= names, set(ours) - names


@pytest.mark.parametrize("recipe", RECIPES)
def test_help_lists_every_option(recipe):
    proc = run_recipe(EGS2 / recipe / "asr1", "--help", timeout=60)
    assert proc.returncode == 0, output(proc)
    for name in template_option_names():
        assert re.search(rf"--{name} .*\[.*\]", proc.stdout), f"--{name} missing from {recipe} --help"
    assert "--stop_stage" in proc.stdout and "[10000]" in proc.stdout
    assert "Recipe options" in proc.stdout


@pytest.mark.parametrize("recipe", RECIPES)
def test_help_works_from_outside_the_recipe_dir(recipe, tmp_path):
    """Users call egs2/<corpus>/asr1/run.sh from the repository root too."""
    proc = subprocess.run([str(EGS2 / recipe / "asr1" / "run.sh"), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, output(proc)
    assert "Usage:" in proc.stdout and "Recipe options" in proc.stdout


def test_unknown_option_is_a_clear_error(recipe_copy):
    d = recipe_copy("mini_synth")
    proc = run_recipe(d, "--small", "true", "--no_such_option", "1", timeout=60)
    assert proc.returncode != 0
    assert "unknown option --no_such_option" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_recipe(d, "--small", "true", "--system", "bljust supervisd", timeout=60)
    assert proc.returncode != 0 and "unknown system 'supervisd'" in proc.stderr
    proc = run_recipe(d, "--small", "true", "--use_lm", "yes", timeout=60)
    assert proc.returncode != 0 and "--use_lm must be true or false" in proc.stderr
    proc = run_recipe(d, "--small", "true", "--stage", timeout=60)
    assert proc.returncode != 0 and "needs a value" in proc.stderr
    proc = run_recipe(d, "--small", "true", "--feats_type", "fbank_pitch", timeout=60)
    assert proc.returncode != 0 and "--feats_type fbank_pitch is not supported (use raw or fbank" in proc.stderr


def test_runner_reports_failed_jobs(tmp_path):
    runner = EGS2 / "TEMPLATE" / "asr1" / "scripts" / "run_local.sh"
    proc = subprocess.run([str(runner), "JOB=1:3", str(tmp_path / "log.JOB"), "bash", "-c", "echo job JOB; [ JOB != 2 ]"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"see {tmp_path}/log.2" in proc.stderr and "1 of 3 job(s) failed" in proc.stderr
    assert "job 3" in (tmp_path / "log.3").read_text()
    assert "# Ended (code 0)" in (tmp_path / "log.1").read_text()
    proc = subprocess.run([str(runner), "--num_nodes", "2", str(tmp_path / "x.log"), "true"], capture_output=True, text=True)
    assert proc.returncode == 2 and "cmd_backend=slurm" in proc.stderr
