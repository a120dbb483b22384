"""The bench scripts are files, not package modules: tests load them from bench/ by path."""
import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load_bench_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def cli_startup():
    return load_bench_script("cli_startup")


@pytest.fixture(scope="session")
def decode_rtf():
    return load_bench_script("decode_rtf")
