"""2-process gloo DDP (torchrun) gives the same parameters as 1 process on the same global
batch, for every solver.

What makes this exact: one backward per step (a single gradient all-reduce), the loss scaled by
world_size/global-weight as ESPnet does, SSL randomness seeded per utterance (not per rank),
CPC negatives drawn within the utterance, equal-length utterances (ESPnet's conv subsampling
makes encoder lengths depend on a batch's padded length) and a LayerNorm-only encoder
(BatchNorm statistics are per rank under DDP, as in stock ESPnet).  The optimizers are SGD: the
two runs' gradients differ only by float summation order (~1e-9), and Adam would blow such noise
up to ±lr on parameters whose true gradient is zero (e.g. attention key biases).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from espnet_bilevel.testing.dummies import make_dummy_corpus
from espnet_bilevel.testing.task_helpers import train_cmd, write_config

SOLVERS = {
    "bljust": {"finetune_epochs": 1, "n_explore": 2, "n_joint": 2,
               "penalty_schedule": "constant", "penalty_schedule_conf": {"gamma": 0.5}},
    "weighted_sum": {"ssl_weight": 0.5},
    "alternating": {},
    "supervised": {},
    "pretrain": {},
}
DDP_ARGS = ["--ngpu", "0", "--multiprocessing_distributed", "false", "--dist_backend", "gloo"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_setup(tmp_path_factory):
    from espnet_bilevel.tasks.bilevel_asr import BilevelASRTask

    root = tmp_path_factory.mktemp("ddp")
    corpus = make_dummy_corpus(root, n_labeled=8, n_unlabeled=8, n_dev=4, fixed_seconds=1.0)
    base = dict(
        max_epoch=2,
        encoder="transformer",
        encoder_conf={"output_size": 16, "attention_heads": 2, "linear_units": 32,
                      "num_blocks": 2, "input_layer": "conv2d", "dropout_rate": 0.0,
                      "positional_dropout_rate": 0.0, "attention_dropout_rate": 0.0},
        ssl_loss_conf={"context_frames": 40, "future_frames": 40, "prediction_steps": 3,
                       "negatives_from": "utterance"},
        sort_in_batch="descending",
        optim="sgd", optim_conf={"lr": 0.05}, optim2="sgd", optim2_conf={"lr": 0.05},
    )
    stats = root / "stats"
    BilevelASRTask.main(cmd=[
        "--collect_stats", "true", "--config", str(write_config(root / "s.yaml", **base)),
        "--token_list", str(corpus["token_list"]), "--token_type", "char",
        "--output_dir", str(stats),
        "--train_data_path_and_name_and_type", f"{corpus['train']}/wav.scp,speech,sound",
        "--train_data_path_and_name_and_type", f"{corpus['train']}/text,text,text",
        "--valid_data_path_and_name_and_type", f"{corpus['dev']}/wav.scp,speech,sound",
        "--valid_data_path_and_name_and_type", f"{corpus['dev']}/text,text,text",
        "--train_shape_file", f"{corpus['train']}/wav.scp",
        "--valid_shape_file", f"{corpus['dev']}/wav.scp",
        "--train_unlab_data_path_and_name_and_type", f"{corpus['train_unlab']}/wav.scp,speech,sound",
        "--train_unlab_shape_file", f"{corpus['train_unlab']}/wav.scp",
    ])
    vocab = len(Path(corpus["token_list"]).read_text().split())
    for split in ("train", "valid"):
        lines = (stats / split / "text_shape").read_text().splitlines()
        (stats / split / "text_shape.char").write_text("".join(f"{x},{vocab}\n" for x in lines))
    runs_1, runs_2 = [], []
    for solver, conf in SOLVERS.items():
        overrides = dict(base, solver=solver, solver_conf=conf)
        if solver == "pretrain":
            overrides["best_model_criterion"] = [["valid", "loss_ssl", "min"]]
        cfg = write_config(root / f"{solver}.yaml", **overrides)
        runs_1.append(train_cmd(corpus, stats, root / "one" / solver, cfg))
        runs_2.append(train_cmd(corpus, stats, root / "two" / solver, cfg, extra=DDP_ARGS))
    return root, runs_1, runs_2


def test_two_process_gloo_ddp_matches_one_process(ddp_setup):
    from espnet_bilevel.testing.run_many import main as run_many

    root, runs_1, runs_2 = ddp_setup
    (root / "runs2.json").write_text(json.dumps(runs_2))
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [torchrun, "--nnodes", "1", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), "-m", "espnet_bilevel.testing.run_many",
         str(root / "runs2.json")],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (root / "runs1.json").write_text(json.dumps(runs_1))
    run_many([str(root / "runs1.json")])

    for solver in SOLVERS:
        one = torch.load(root / "one" / solver / "2epoch.pth", map_location="cpu")
        two = torch.load(root / "two" / solver / "2epoch.pth", map_location="cpu")
        cfg = (root / "two" / solver / "config.yaml").read_text()
        assert "distributed: true" in cfg
        assert one.keys() == two.keys()
        for k in one:
            torch.testing.assert_close(one[k], two[k], rtol=0, atol=1e-6, msg=f"{solver}: {k}")
        # the same steps with the same (all-reduced) losses, and the losses really changed
        log1 = [json.loads(x) for x in (root / "one" / solver / "steps" / "epoch2.jsonl").open()]
        log2 = [json.loads(x) for x in (root / "two" / solver / "steps" / "epoch2.jsonl").open()]
        assert [s["phase"] for s in log1] == [s["phase"] for s in log2] and log1
        for a, b in zip(log1, log2):
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)


def test_a_failing_rank_stops_the_whole_job_with_its_error(ddp_setup, tmp_path):
    """Rank 1 raises in epoch 1; torchrun must stop rank 0 too and report rank 1's error."""
    root, _, runs_2 = ddp_setup
    cmd = [c if c != str(root / "two" / "bljust") else str(tmp_path / "fail") for c in runs_2[0]]
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    env = dict(os.environ, OMP_NUM_THREADS="1", ESPNET_BILEVEL_TEST_RAISE_AT="1:2:1")
    proc = subprocess.run(
        [torchrun, "--nnodes", "1", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), "-m", "espnet_bilevel.bin.bilevel_asr_train", *cmd],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "injected failure on rank 1" in out
    assert not (tmp_path / "fail" / "checkpoint.pth").exists()
