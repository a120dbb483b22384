"""Mid-epoch resume: a real training subprocess is SIGKILLed at three different points (a
pre-empted job), resumed each time with --resume true, and ends with the same parameters as an
uninterrupted run.  Plus the file-level guarantees: atomic writes, newest two kept, fallback
from an unreadable newest checkpoint."""
import os
import subprocess
import sys

import pytest
import torch

from espnet_bilevel.testing.task_helpers import train_cmd, write_config
from espnet_bilevel.trainers.step_checkpoint import (
    list_step_checkpoints,
    load_resumable_step_checkpoint,
    save_step_checkpoint,
)


def _train_subprocess(cmd, kill_at=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("ESPNET_BILEVEL_TEST_SIGKILL_AT", None)
    if kill_at:
        env["ESPNET_BILEVEL_TEST_SIGKILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "espnet_bilevel.bin.bilevel_asr_train", *cmd],
                          env=env, capture_output=True, text=True, timeout=600)


def test_sigkill_at_three_points_then_resume_matches_uninterrupted(tmp_path, tiny_corpus,
                                                                   tiny_stats):
    from espnet_bilevel.tasks.bilevel_asr import BilevelASRTask

    cfg = write_config(
        tmp_path / "bl.yaml", max_epoch=3, solver="bljust",
        solver_conf={"finetune_epochs": 1, "penalty_schedule_conf": {"gamma_max": 1.0}},
        # dropout and SpecAugment use the global RNG, which the step checkpoint must restore
        encoder_conf={"output_size": 16, "attention_heads": 2, "linear_units": 32,
                      "num_blocks": 2, "input_layer": "conv2d", "dropout_rate": 0.1,
                      "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1,
                      "cnn_module_kernel": 5},
        specaug="specaug", specaug_conf={"apply_time_warp": False, "num_freq_mask": 1,
                                         "freq_mask_width_range": [0, 4], "num_time_mask": 1,
                                         "time_mask_width_range": [0, 5]},
        scheduler="warmuplr", scheduler_conf={"warmup_steps": 4},
    )
    extra = ["--step_checkpoint_interval", "2", "--num_workers", "0"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    BilevelASRTask.main(cmd=train_cmd(tiny_corpus, tiny_stats, full, cfg, extra=extra))

    cmd = train_cmd(tiny_corpus, tiny_stats, killed, cfg, extra=extra + ["--resume", "true"])
    # epoch 1 has 3 SSL + 2 joint steps; epoch 3 is fine-tuning (2 steps).  Kill points: between
    # two step checkpoints (1:3), right after one (2:4 -> replays nothing), in the FT epoch (3:1).
    for kill_at in ("1:3", "2:4", "3:1"):
        proc = _train_subprocess(cmd, kill_at)
        assert proc.returncode == -9, (kill_at, proc.returncode, proc.stderr[-2000:])
    proc = _train_subprocess(cmd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming mid-epoch" in proc.stderr or "resumed" in proc.stderr

    a = torch.load(full / "3epoch.pth", map_location="cpu")
    b = torch.load(killed / "3epoch.pth", map_location="cpu")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    assert len(list_step_checkpoints(killed)) <= 2


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(2, 2)


def test_newest_two_kept_and_unreadable_newest_falls_back(tmp_path, caplog):
    m = _Tiny()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    for step in (2, 4, 6):
        save_step_checkpoint(tmp_path, 5, step, m, [opt], [None], None)
    files = list_step_checkpoints(tmp_path)
    assert [f.name for f in files] == ["epoch5_step4.pth", "epoch5_step6.pth"]
    assert not [p for p in (tmp_path / "step_checkpoints").iterdir() if p.name.endswith(".tmp")]
    files[-1].write_bytes(b"truncated")  # a corrupt newest file
    state = load_resumable_step_checkpoint(tmp_path, next_epoch=5)
    assert state["step"] == 4 and "unreadable" in caplog.text
    assert load_resumable_step_checkpoint(tmp_path, next_epoch=6) is None
