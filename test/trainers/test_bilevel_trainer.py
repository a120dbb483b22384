"""End-to-end training through the real task CLI (in-process) on the tiny synthetic corpus:
every solver trains 2 epochs, the per-step log matches the solver's plan, resume after an
interruption continues exactly as an uninterrupted run, and checkpoints hold both optimizers."""
import json
import math
from pathlib import Path

import pytest
import torch

from espnet_bilevel.testing.task_helpers import train_cmd, write_config

SOLVER_CONFS = {
    "bljust": {"finetune_epochs": 1, "penalty_schedule_conf": {"gamma_max": 2.0}},
    "weighted_sum": {"ssl_weight": 0.5},
    "alternating": {},
    "supervised": {},
    "pretrain": {},
}


def run_task(cmd):
    from espnet_bilevel.tasks.bilevel_asr import BilevelASRTask

    BilevelASRTask.main(cmd=cmd)


def _config(tmp_path, solver, **kw):
    overrides = dict(solver=solver, solver_conf=SOLVER_CONFS[solver], **kw)
    if solver == "pretrain":
        overrides["best_model_criterion"] = [["valid", "loss_ssl", "min"]]
    return write_config(tmp_path / f"{solver}.yaml", **overrides)


def _steps(exp: Path, epoch: int):
    return [json.loads(line) for line in (exp / "steps" / f"epoch{epoch}.jsonl").open()]


def _final_state(exp: Path, epoch: int = 2):
    return torch.load(exp / f"{epoch}epoch.pth", map_location="cpu")


@pytest.mark.parametrize("solver", sorted(SOLVER_CONFS))
def test_each_solver_trains_two_epochs(solver, tmp_path, tiny_corpus, tiny_stats):
    exp = tmp_path / "exp"
    run_task(train_cmd(tiny_corpus, tiny_stats, exp, _config(tmp_path, solver)))
    ckpt = torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert len(ckpt["optimizers"]) == 2 and len(ckpt["schedulers"]) == 2
    assert ckpt["reporter"]["epoch"] == 2
    phases = [s["phase"] for s in _steps(exp, 1)]
    # tiny corpus, batch 4: 8 labeled utts -> 2 batches, 12 unlabeled -> 3 batches per pass
    expected = {
        "bljust": ["lower"] * 3 + ["joint"] * 2,
        "weighted_sum": ["joint"] * 2,
        "alternating": ["lower", "upper"] * 2,
        "supervised": ["upper"] * 2,
        "pretrain": ["lower"] * 3,
    }[solver]
    assert phases == expected
    for s in _steps(exp, 1) + _steps(exp, 2):
        assert math.isfinite(s["loss"])
    criterion = "valid.loss_ssl" if solver == "pretrain" else "valid.cer_ctc"
    assert (exp / f"{criterion}.ave.pth").exists()


def test_bljust_step_log_follows_plan_and_gamma(tmp_path, tiny_corpus, tiny_stats):
    exp = tmp_path / "exp"
    cfg = write_config(
        tmp_path / "bl.yaml", max_epoch=3, solver="bljust",
        solver_conf={"n_explore": 2, "n_joint": 3, "explore_from_epoch": 2, "finetune_epochs": 1,
                     "finetune_steps_per_epoch": 2, "penalty_schedule_conf": {"gamma_max": 2.0}},
    )
    run_task(train_cmd(tiny_corpus, tiny_stats, exp, cfg))
    e1, e2, e3 = (_steps(exp, e) for e in (1, 2, 3))
    # K = 2 bilevel epochs: gamma_k = (k-1) * 2.0 / 2; SSL exploration only from epoch 2 on
    assert [(s["phase"], s["gamma"]) for s in e1] == [("joint", 0.0)] * 3
    assert [(s["phase"], s["gamma"]) for s in e2] == [("lower", 0.0)] * 2 + [("joint", 1.0)] * 3
    assert [s["phase"] for s in e3] == ["upper"] * 2
    # the fine-tuning lr is finetune_lr_scale (0.1) times the scheduler's lr
    assert e3[0]["lr"] == pytest.approx(0.1 * 0.002)
    # joint steps with gamma > 0 descend f + gamma*g
    for s in e2[2:]:
        assert s["loss"] == pytest.approx(s["loss_sup"] + 1.0 * s["loss_ssl"], rel=1e-4)


class _Interrupt(Exception):
    pass


def _train_full_and_interrupted_then_resumed(cfg, tmp_path, tiny_corpus, tiny_stats, monkeypatch):
    """Train ``cfg`` once without a break (``full``) and once dying at the start of epoch 2, then
    resumed with --resume true (``resumed``); returns the two output dirs."""
    from espnet_bilevel.trainers.bilevel_trainer import BilevelTrainer

    full, resumed = tmp_path / "full", tmp_path / "resumed"
    run_task(train_cmd(tiny_corpus, tiny_stats, full, cfg))
    original = BilevelTrainer.train_one_epoch.__func__

    def dies_in_epoch_2(cls, *args, **kwargs):
        if kwargs["iterator"].epoch == 2:
            raise _Interrupt()
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(BilevelTrainer, "train_one_epoch", classmethod(dies_in_epoch_2))
    with pytest.raises(_Interrupt):
        run_task(train_cmd(tiny_corpus, tiny_stats, resumed, cfg))
    assert (resumed / "checkpoint.pth").exists() and not (resumed / "2epoch.pth").exists()
    monkeypatch.undo()
    run_task(train_cmd(tiny_corpus, tiny_stats, resumed, cfg, extra=["--resume", "true"]))
    return full, resumed


@pytest.mark.parametrize("solver", sorted(SOLVER_CONFS))
def test_resume_after_interruption_matches_uninterrupted_run(
    solver, tmp_path, tiny_corpus, tiny_stats, monkeypatch
):
    # with batch-level lr schedulers on both optimizers, so their state must be restored too
    cfg = _config(tmp_path, solver, scheduler="warmuplr", scheduler_conf={"warmup_steps": 3},
                  scheduler2="warmuplr", scheduler2_conf={"warmup_steps": 5})
    full, resumed = _train_full_and_interrupted_then_resumed(
        cfg, tmp_path, tiny_corpus, tiny_stats, monkeypatch)

    a, b = _final_state(full), _final_state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    ca = torch.load(full / "checkpoint.pth", map_location="cpu", weights_only=False)
    cb = torch.load(resumed / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert ca["schedulers"] == cb["schedulers"] and ca["schedulers"][0] is not None
    for oa, ob in zip(ca["optimizers"], cb["optimizers"]):
        for sa, sb in zip(oa["state"].values(), ob["state"].values()):
            for key in sa:
                torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=1e-6)


def test_resume_keeps_a_kmeans_codebook_that_is_still_being_refined(
    tmp_path, tiny_corpus, tiny_stats, monkeypatch
):
    """BEST-RQ with online k-means targets, interrupted while its codebook is still moving: the
    resumed run must continue from the refined codebook, not reseed it."""
    # two bilevel epochs, no fine-tuning epoch, so that epoch 2 (the resumed one) has SSL steps
    cfg = write_config(tmp_path / "km.yaml", solver="bljust",
                  solver_conf={"finetune_epochs": 0, "penalty_schedule_conf": {"gamma_max": 2.0}},
                  ssl_loss="bestrq",
                  ssl_loss_conf={"codebook_size": 8, "mask_prob": 0.3, "mask_span": 2,
                                 "quantizer": "online_kmeans", "kmeans_update_steps": 100})
    full, resumed = _train_full_and_interrupted_then_resumed(
        cfg, tmp_path, tiny_corpus, tiny_stats, monkeypatch)

    a, b = _final_state(full), _final_state(resumed)
    after_epoch1 = _final_state(full, 1)
    # still refining after both epochs (fewer than 100 SSL batches), and moved in epoch 2
    assert 1 < int(a["ssl_loss.kmeans.num_updates"]) < 100
    assert int(after_epoch1["ssl_loss.kmeans.num_updates"]) < int(a["ssl_loss.kmeans.num_updates"])
    assert not torch.equal(after_epoch1["ssl_loss.kmeans.centroids"], a["ssl_loss.kmeans.centroids"])
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def _nan_ssl(monkeypatch, n_bad):
    """Make the first ``n_bad`` SSL losses NaN (None = all of them)."""
    from espnet_bilevel.models.bilevel_asr_model import BilevelASRModel

    original = BilevelASRModel.ssl_forward
    calls = {"n": 0}

    def ssl_forward(self, *args, **kwargs):
        loss, stats = original(self, *args, **kwargs)
        calls["n"] += 1
        if self.training and (n_bad is None or calls["n"] <= n_bad):
            loss = loss * float("nan")
        return loss, stats

    monkeypatch.setattr(BilevelASRModel, "ssl_forward", ssl_forward)


def test_a_nan_step_is_skipped_counted_and_training_goes_on(tmp_path, tiny_corpus, tiny_stats,
                                                             monkeypatch):
    _nan_ssl(monkeypatch, n_bad=1)
    exp = tmp_path / "exp"
    run_task(train_cmd(tiny_corpus, tiny_stats, exp, _config(tmp_path, "bljust")))
    steps = _steps(exp, 1)
    assert math.isnan(steps[0]["loss"]) and all(math.isfinite(s["loss"]) for s in steps[1:])
    state = _final_state(exp)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_consecutive_nan_steps_stop_with_an_error_naming_the_level(tmp_path, tiny_corpus,
                                                                   tiny_stats, monkeypatch, capsys):
    from espnet_bilevel.bin.bilevel_asr_train import main

    _nan_ssl(monkeypatch, n_bad=None)
    with pytest.raises(SystemExit) as e:
        main(train_cmd(tiny_corpus, tiny_stats, tmp_path / "exp", _config(tmp_path, "bljust"),
                       extra=["--max_bad_steps", "2"]))
    assert e.value.code == 3
    err = capsys.readouterr().err
    assert "2 consecutive steps of the lower level (SSL loss g)" in err


def test_gradient_accumulation_draws_accum_grad_batches_per_step(tmp_path, tiny_corpus,
                                                                  tiny_stats):
    exp = tmp_path / "exp"
    cfg = write_config(tmp_path / "acc.yaml", solver="bljust",
                       solver_conf={"n_explore": 2, "n_joint": 1, "finetune_epochs": 1})
    run_task(train_cmd(tiny_corpus, tiny_stats, exp, cfg, extra=["--accum_grad", "2"]))
    # 2 SSL steps + 1 joint step, each made of 2 mini-batches
    assert [s["phase"] for s in _steps(exp, 1)] == ["lower", "lower", "joint"]
    assert [s["phase"] for s in _steps(exp, 2)] == ["upper"]  # 2 labeled batches // 2
