"""Helpers to build and run the bilevel task on the tiny synthetic corpus (tests, benchmarks)."""
import copy
from pathlib import Path

import yaml

from espnet_bilevel.testing.dummies import TINY_CONFIG


def set_threads(n: int = 1):
    import torch

    torch.set_num_threads(n)


def write_config(path: Path, **overrides) -> Path:
    conf = copy.deepcopy(TINY_CONFIG)
    for k, v in overrides.items():
        if v is None and k in conf:
            conf[k] = None
        else:
            conf[k] = v
    path.write_text(yaml.safe_dump(conf))
    return path


def train_cmd(corpus, stats, output_dir, config, extra=()):
    c = corpus
    return [
        "--config", str(config),
        "--token_list", str(c["token_list"]), "--token_type", "char",
        "--normalize", "global_mvn",
        "--normalize_conf", f"stats_file={stats}/train/feats_stats.npz",
        "--train_data_path_and_name_and_type", f"{c['train']}/wav.scp,speech,sound",
        "--train_data_path_and_name_and_type", f"{c['train']}/text,text,text",
        "--valid_data_path_and_name_and_type", f"{c['dev']}/wav.scp,speech,sound",
        "--valid_data_path_and_name_and_type", f"{c['dev']}/text,text,text",
        "--train_shape_file", f"{stats}/train/speech_shape",
        "--train_shape_file", f"{stats}/train/text_shape.char",
        "--valid_shape_file", f"{stats}/valid/speech_shape",
        "--valid_shape_file", f"{stats}/valid/text_shape.char",
        "--train_unlab_data_path_and_name_and_type", f"{c['train_unlab']}/wav.scp,speech,sound",
        "--train_unlab_shape_file", f"{stats}/unlab/train/speech_shape",
        "--fold_length", "80000", "--fold_length", "150",
        "--output_dir", str(output_dir),
        *extra,
    ]


def build_tiny_model(tmp_path, token_list, **overrides):
    """A BilevelASRModel built through the task's parser, as the CLI would build it."""
    from espnet_bilevel.tasks.bilevel_asr import BilevelASRTask

    set_threads()
    cfg = write_config(tmp_path / "model.yaml", **overrides)
    parser = BilevelASRTask.get_parser()
    args = parser.parse_args(["--config", str(cfg), "--token_list", str(token_list)])
    return BilevelASRTask.build_model(args), args
