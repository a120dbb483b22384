"""Shared fixtures: a tiny synthetic corpus, its statistics, and helpers to run the task.

ESPnet's import costs ~17 s, so everything here runs in-process (one import per pytest run).
"""
import os
from pathlib import Path

import pytest

from espnet_bilevel.testing.dummies import make_dummy_corpus
from espnet_bilevel.testing.task_helpers import set_threads, write_config

# Keep CPU tests deterministic and avoid oversubscribing the 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    return make_dummy_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def tiny_stats(tiny_corpus, tmp_path_factory):
    """--collect_stats for both streams; adds the char-vocab suffix to text shapes."""
    from espnet_bilevel.tasks.bilevel_asr import BilevelASRTask

    set_threads()
    root = tmp_path_factory.mktemp("stats")
    cfg = write_config(root / "tiny.yaml")
    c = tiny_corpus
    out = root / "exp_stats"
    BilevelASRTask.main(
        cmd=[
            "--collect_stats", "true", "--config", str(cfg),
            "--token_list", str(c["token_list"]), "--token_type", "char",
            "--output_dir", str(out),
            "--train_data_path_and_name_and_type", f"{c['train']}/wav.scp,speech,sound",
            "--train_data_path_and_name_and_type", f"{c['train']}/text,text,text",
            "--valid_data_path_and_name_and_type", f"{c['dev']}/wav.scp,speech,sound",
            "--valid_data_path_and_name_and_type", f"{c['dev']}/text,text,text",
            "--train_shape_file", f"{c['train']}/wav.scp",
            "--valid_shape_file", f"{c['dev']}/wav.scp",
            "--train_unlab_data_path_and_name_and_type", f"{c['train_unlab']}/wav.scp,speech,sound",
            "--train_unlab_shape_file", f"{c['train_unlab']}/wav.scp",
        ]
    )
    vocab = len(Path(c["token_list"]).read_text().split())
    for split in ("train", "valid"):
        lines = (out / split / "text_shape").read_text().split("\n")
        (out / split / "text_shape.char").write_text(
            "\n".join(f"{line},{vocab}" for line in lines if line) + "\n"
        )
    return out




def pytest_collection_modifyitems(config, items):
    """Start the minutes-long end-to-end tests first: with pytest-xdist (pytest.ini runs two
    workers) the short tests then fill the gaps and both workers finish at about the same time."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: keeps file order
