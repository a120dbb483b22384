"""Helpers for the recipe tests: run recipes as real subprocesses in a scratch copy of the repo.

A recipe run writes data/, dump/, exp/ and RESULTS.md into its recipe directory. The tests never
touch the repository's recipe dirs: ``recipe_copy`` builds ``<tmp>/egs2/<recipe>/asr1`` (a copy
of run.sh, local/, conf/ and the TEMPLATE symlinks) next to symlinks ``<tmp>/{tools,conf,
espnet_bilevel,egs2/TEMPLATE}`` into the real repository, so path.sh finds tools/venv exactly as
in a checkout.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EGS2 = REPO / "egs2"
RECIPES = ("mini_synth", "mini_an4", "librispeech", "tedlium2")

# the data-utility helpers (tiny audio files, fake corpora in the real layouts) are reused
sys.path.insert(0, str(REPO / "test" / "data"))


def _ignore(dirpath, names):
    skip = {"downloads"}
    return [n for n in names if n in skip or n.split("_")[0] in ("data", "dump", "exp", "RESULTS", "RESULTS.md")
            and Path(dirpath).name == "asr1"]


def make_recipe_copy(root: Path, recipe: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in ("tools", "conf", "espnet_bilevel"):
        if not (root / name).exists():
            (root / name).symlink_to(REPO / name)
    (root / "egs2").mkdir(exist_ok=True)
    if not (root / "egs2" / "TEMPLATE").exists():
        (root / "egs2" / "TEMPLATE").symlink_to(EGS2 / "TEMPLATE")
    dst = root / "egs2" / recipe / "asr1"
    shutil.copytree(EGS2 / recipe / "asr1", dst, symlinks=True, ignore=_ignore)
    return dst


@pytest.fixture
def recipe_copy(tmp_path):
    """recipe_copy(name) -> path of a fresh, runnable copy of egs2/<name>/asr1."""
    return lambda name: make_recipe_copy(tmp_path / "repo", name)


def run_recipe(recipe_dir: Path, *args: str, timeout: float = 900, env=None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.pop("BILEVEL_RUN_CMD", None)
    full_env.update(env or {})
    return subprocess.run(["./run.sh", *args], cwd=recipe_dir, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr
