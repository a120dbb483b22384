"""BilevelTrainer: ESPnet's Trainer with one optimizer step per solver-planned step.

``Trainer.run`` is inherited unchanged (checkpoint.pth with both optimizers and schedulers,
``--resume``, n-best selection, tensorboard, early stopping); only these change:

* ``train_one_epoch`` follows the plan of the epoch (see ``solvers/``): every step is one forward
  of the (possibly DDP-wrapped) model computing ``sup_weight·f + ssl_weight·g``, one backward,
  gradient clipping over all parameters, one ``step()`` of the optimizer the phase names
  (``optim`` for joint/upper, ``optim2`` for lower) with its batch-level scheduler, then
  ``zero_grad(set_to_none=True)`` on every optimizer so nothing leaks into the next step;
* ``validate_one_epoch`` reports ESPnet's supervised stats (loss, loss_ctc, cer_ctc, wer, ...)
  plus the SSL loss ``loss_ssl`` on the same held-out audio;
* ``run`` swaps in our correct n-best checkpoint averaging (ESPnet 202511 corrupts the average
  of a second criterion, see ``espnet_bilevel/checkpoints/average_nbest.py``).

Per-step records (phase, γ, f, g, lr) go to ``<output_dir>/steps/epoch<k>.jsonl`` on rank 0; the
file of an epoch is rewritten when the epoch is re-run after a resume.
"""
import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence

import torch
from espnet2.schedulers.abs_scheduler import AbsBatchStepScheduler, AbsScheduler
from espnet2.torch_utils.device_funcs import to_device
from espnet2.torch_utils.recursive_op import recursive_average
from espnet2.train import trainer as espnet_trainer_module
from espnet2.train.distributed_utils import DistributedOption
from espnet2.train.reporter import SubReporter
from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass

from espnet_bilevel.solvers.step_plan import JOINT, LOWER, UPPER
from espnet_bilevel.trainers.step_checkpoint import (
    atomic_torch_saves,
    load_resumable_step_checkpoint,
    restore,
    save_step_checkpoint,
    set_rng_state,
)

try:  # the GradScaler/autocast pair ESPnet's own trainer uses
    from torch.cuda.amp import GradScaler, autocast
except ImportError:  # pragma: no cover
    from torch.amp import GradScaler, autocast


@contextlib.contextmanager
def _scaled_lr(optimizer: torch.optim.Optimizer, scale: float):
    """Run one optimizer step at lr·scale (BL-JUST's fine-tuning lr τ = scale·α), then restore
    the scheduler-controlled lr so the schedule itself is unaffected."""
    if scale == 1.0:
        yield
        return
    saved = [g["lr"] for g in optimizer.param_groups]
    for g in optimizer.param_groups:
        g["lr"] = g["lr"] * scale
    try:
        yield
    finally:
        for g, lr in zip(optimizer.param_groups, saved):
            g["lr"] = lr


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


class _StepLog:
    """Rank-0 JSON-lines log of every step of one epoch (for f/g/γ plots).  A re-run epoch
    rewrites its file; a mid-epoch resume keeps the lines of the steps before it."""

    def __init__(self, output_dir: Optional[str], epoch: int, enabled: bool, keep_steps: int = 0):
        self.f = None
        if enabled and output_dir is not None:
            d = Path(output_dir) / "steps"
            d.mkdir(parents=True, exist_ok=True)
            path = d / f"epoch{epoch}.jsonl"
            kept = []
            if keep_steps > 0 and path.exists():
                kept = [x for x in path.read_text(encoding="utf-8").splitlines()
                        if x.strip() and json.loads(x)["step"] <= keep_steps]
            self.f = open(path, "w", encoding="utf-8")
            self.f.writelines(x + "\n" for x in kept)

    def write(self, record: dict):
        if self.f is not None:
            self.f.write(json.dumps(record) + "\n")

    def close(self):
        if self.f is not None:
            self.f.close()


LEVEL_NAMES = {
    LOWER: "lower level (SSL loss g)",
    UPPER: "upper level (supervised loss f)",
    JOINT: "joint step (f + gamma*g)",
}


class NonFiniteTrainingError(RuntimeError):
    """Too many consecutive steps of one level had a non-finite loss or gradient."""


@dataclasses.dataclass
class BilevelTrainerOptions(TrainerOptions):
    max_bad_steps: int = 20
    step_checkpoint_interval: int = 0


class BilevelTrainer(Trainer):
    # consecutive non-finite steps per level; reset at the start of every run
    _bad_steps: Dict[str, int] = {}

    @classmethod
    def build_options(cls, args: argparse.Namespace) -> BilevelTrainerOptions:
        return build_dataclass(BilevelTrainerOptions, args)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group("Bilevel trainer related")
        group.add_argument(
            "--max_bad_steps",
            type=int,
            default=20,
            help="Stop with an error after this many consecutive steps of the same level "
            "(SSL, supervised or joint) whose loss or gradient is NaN/inf; such steps are "
            "skipped and counted (stat skipped_steps)",
        )
        group.add_argument(
            "--step_checkpoint_interval",
            type=int,
            default=0,
            help="Also checkpoint every N optimizer steps (0: only at epoch ends, as ESPnet), "
            "into <output_dir>/step_checkpoints/ (atomic, newest 2 kept); --resume true then "
            "continues from the newest one mid-epoch",
        )

    # a step checkpoint to apply at the start of the epoch it belongs to (set by run on resume)
    _resume_step_state: Optional[dict] = None

    @classmethod
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory,
            plot_attention_iter_factory, trainer_options, distributed_option) -> None:
        cls._bad_steps = {}
        cls._resume_step_state = None
        output_dir = Path(trainer_options.output_dir)
        if trainer_options.resume:
            last_epoch = 0
            if (output_dir / "checkpoint.pth").exists():
                ckpt = torch.load(output_dir / "checkpoint.pth", map_location="cpu",
                                  weights_only=False)
                last_epoch = int(ckpt["reporter"]["epoch"])
                del ckpt
            cls._resume_step_state = load_resumable_step_checkpoint(output_dir, last_epoch + 1)
        # Our averaging has ESPnet's signature and file names; patch it in only for this run,
        # and make ESPnet's in-place checkpoint writes atomic.
        from espnet_bilevel.checkpoints.average_nbest import average_nbest_models

        original = espnet_trainer_module.average_nbest_models
        espnet_trainer_module.average_nbest_models = average_nbest_models
        try:
            with atomic_torch_saves():
                super().run(
                    model=model, optimizers=optimizers, schedulers=schedulers,
                    train_iter_factory=train_iter_factory, valid_iter_factory=valid_iter_factory,
                    plot_attention_iter_factory=plot_attention_iter_factory,
                    trainer_options=trainer_options, distributed_option=distributed_option,
                )
        finally:
            espnet_trainer_module.average_nbest_models = original

    @classmethod
    def train_one_epoch(
        cls,
        model: torch.nn.Module,
        iterator: Iterable,
        optimizers: Sequence[torch.optim.Optimizer],
        schedulers: Sequence[Optional[AbsScheduler]],
        scaler: Optional[GradScaler],
        reporter: SubReporter,
        summary_writer,
        options: TrainerOptions,
        distributed_option: DistributedOption,
    ) -> bool:
        if options.grad_noise:
            raise NotImplementedError("--grad_noise is not supported by the bilevel trainer")
        device = "cuda" if options.ngpu > 0 else "cpu"
        distributed = distributed_option.distributed
        rank0 = not distributed or distributed_option.dist_rank == 0
        accum_grad = options.accum_grad
        epoch = iterator.epoch
        log_interval = options.log_interval or max(len(iterator) // 20, 10)
        interval = getattr(options, "step_checkpoint_interval", 0)

        istep = 0
        pending_rng = None
        state = cls._resume_step_state
        if state is not None and state["epoch"] == epoch:
            pending_rng = restore(state, _unwrap(model), optimizers, schedulers, scaler)
            istep = int(state["step"])
            iterator.skip_steps(istep)
            cls._resume_step_state = None
        steplog = _StepLog(options.output_dir, epoch, enabled=rank0, keep_steps=istep)
        my_rank = distributed_option.dist_rank if distributed else 0
        kill_at = _test_fault_point("ESPNET_BILEVEL_TEST_SIGKILL_AT", my_rank)
        raise_at = _test_fault_point("ESPNET_BILEVEL_TEST_RAISE_AT", my_rank)

        model.train()
        all_steps_are_invalid = True
        t_step = time.perf_counter()
        wait_at_step_start = 0.0
        try:
            for spec, micro, utt_ids, batch in iterator:
                if pending_rng is not None:  # see step_checkpoint.restore
                    set_rng_state(pending_rng)
                    pending_rng = None
                batch = to_device(batch, device)
                if spec.draws_unlabeled:
                    batch["ssl_row_seeds"] = [
                        row_seed(options.seed, epoch, istep + 1, micro, uid)
                        for uid in utt_ids["unlabeled"]
                    ]
                if options.no_forward_run:
                    all_steps_are_invalid = False
                    continue
                with autocast(scaler is not None, **espnet_trainer_module.autocast_args):
                    with reporter.measure_time("forward_time"):
                        loss, stats, weight = model(
                            **batch, sup_weight=spec.sup_weight, ssl_weight=spec.ssl_weight
                        )
                    stats = {k: v for k, v in stats.items() if v is not None}
                    if options.ngpu > 1 or distributed:
                        loss = (loss * weight.type(loss.dtype)).sum()
                        stats, weight = recursive_average(stats, weight, distributed)
                        loss /= weight
                    if distributed:
                        # DDP averages gradients over ranks; undo it so the update equals the
                        # one-process update on the same global batch.
                        loss *= torch.distributed.get_world_size()
                    loss /= accum_grad
                reporter.register(stats, weight)
                with reporter.measure_time("backward_time"):
                    if scaler is not None:
                        scaler.scale(loss).backward()
                    else:
                        loss.backward()
                record_loss = float(stats["loss"]) if "loss" in stats else None
                del loss
                if micro + 1 < accum_grad:
                    reporter.next()
                    continue

                # ---- one optimizer step for this plan step
                istep += 1
                opt_idx = spec.optim_idx
                optimizer, scheduler = optimizers[opt_idx], schedulers[opt_idx]
                if scaler is not None:
                    scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    model.parameters(), max_norm=options.grad_clip, norm_type=options.grad_clip_type
                )
                if not isinstance(grad_norm, torch.Tensor):
                    grad_norm = torch.tensor(grad_norm)
                finite_loss = record_loss is None or math.isfinite(record_loss)
                if not torch.isfinite(grad_norm) or not finite_loss:
                    cls._count_bad_step(spec, stats, epoch, istep, grad_norm, options)
                    if scaler is not None:
                        scaler.step(optimizer)
                        scaler.update()
                    reporter.register({"skipped_steps": 1.0})
                else:
                    cls._bad_steps[spec.phase] = 0
                    all_steps_are_invalid = False
                    with reporter.measure_time("optim_step_time"):
                        with _scaled_lr(optimizer, spec.lr_scale):
                            if scaler is not None:
                                scaler.step(optimizer)
                                scaler.update()
                            else:
                                optimizer.step()
                        if isinstance(scheduler, AbsBatchStepScheduler):
                            scheduler.step()
                    reporter.register(
                        {
                            "grad_norm": grad_norm,
                            "clip": torch.where(
                                grad_norm > options.grad_clip,
                                grad_norm.new_tensor(100),
                                grad_norm.new_tensor(0),
                            ),
                            "loss_scale": scaler.get_scale() if scaler else 1.0,
                            "skipped_steps": 0.0,
                        }
                    )
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)

                now = time.perf_counter()
                step_time = now - t_step
                data_wait = iterator.data_wait_time - wait_at_step_start
                t_step, wait_at_step_start = now, iterator.data_wait_time
                lrs = {
                    f"optim{i}_lr{j}": pg["lr"]
                    for i, opt in enumerate(optimizers)
                    for j, pg in enumerate(opt.param_groups)
                }
                reporter.register(
                    dict(
                        lrs,
                        gamma=spec.gamma,
                        phase_lower=float(spec.phase == LOWER),
                        phase_joint=float(spec.phase == JOINT),
                        phase_upper=float(spec.phase == UPPER),
                        train_time=step_time,
                        data_wait_time=data_wait,
                    )
                )
                steplog.write(
                    {
                        "epoch": epoch,
                        "step": istep,
                        "phase": spec.phase,
                        "gamma": spec.gamma,
                        "loss": record_loss,
                        "loss_sup": _f(stats.get("loss_sup")),
                        "loss_ssl": _f(stats.get("loss_ssl")),
                        "loss_ctc": _f(stats.get("loss_ctc")),
                        "lr": optimizer.param_groups[0]["lr"] * spec.lr_scale,
                        "time": step_time,
                        "data_wait": data_wait,
                    }
                )
                reporter.next()
                if kill_at == (epoch, istep):
                    steplog.close()
                    os.kill(os.getpid(), signal.SIGKILL)
                if raise_at == (epoch, istep):
                    raise RuntimeError(f"injected failure on rank {my_rank} (epoch {epoch}, step {istep})")
                if interval > 0 and istep % interval == 0 and rank0:
                    save_step_checkpoint(options.output_dir, epoch, istep, _unwrap(model),
                                         optimizers, schedulers, scaler)
                if istep % log_interval == 0:
                    logging.info(reporter.log_message(-log_interval))
                    if summary_writer is not None:
                        reporter.tensorboard_add_scalar(summary_writer, -log_interval)
                    if options.use_wandb:
                        reporter.wandb_log()
        finally:
            steplog.close()
        return all_steps_are_invalid

    @classmethod
    def _count_bad_step(cls, spec, stats, epoch, istep, grad_norm, options) -> None:
        """Skip (the caller does) and count a non-finite step; too many in a row is an error
        that names the level, so a diverging SSL loss is not mistaken for a CTC problem."""
        n = cls._bad_steps.get(spec.phase, 0) + 1
        cls._bad_steps[spec.phase] = n
        level = LEVEL_NAMES[spec.phase]
        if spec.phase == JOINT:
            for key, name in (("loss_ssl", LEVEL_NAMES[LOWER]), ("loss_sup", LEVEL_NAMES[UPPER])):
                v = stats.get(key)
                if v is not None and not torch.isfinite(torch.as_tensor(v)).all():
                    level = f"{level}: {name}"
        logging.warning(
            f"epoch {epoch} step {istep}: non-finite loss or gradient (grad norm {float(grad_norm)})"
            f" in the {level}; update skipped ({n} in a row)"
        )
        if n >= options.max_bad_steps:
            raise NonFiniteTrainingError(
                f"{n} consecutive steps of the {level} had a non-finite loss or gradient "
                f"(last: epoch {epoch}, step {istep}); stopping. Lower the learning rate or "
                f"gamma, check the input data, or raise --max_bad_steps."
            )

    @classmethod
    @torch.no_grad()
    def validate_one_epoch(
        cls,
        model: torch.nn.Module,
        iterator: Iterable,
        reporter: SubReporter,
        options: TrainerOptions,
        distributed_option: DistributedOption,
    ) -> None:
        device = "cuda" if options.ngpu > 0 else "cpu"
        distributed = distributed_option.distributed
        module = _unwrap(model)
        module.eval()
        # Same stop protocol as ESPnet: ranks with fewer batches tell the others to stop.
        iterator_stop = torch.tensor(0).to(device)
        for _utt_id, batch in iterator:
            if distributed:
                torch.distributed.all_reduce(iterator_stop, torch.distributed.ReduceOp.SUM)
                if iterator_stop > 0:
                    break
            batch = to_device(batch, device)
            if options.no_forward_run:
                continue
            with autocast(options.use_amp, **espnet_trainer_module.autocast_args):
                _, stats, weight = module.validation_forward(**batch)
            stats = {k: v for k, v in stats.items() if v is not None}
            if options.ngpu > 1 or distributed:
                stats, weight = recursive_average(stats, weight, distributed)
            reporter.register(stats, weight)
            reporter.next()
        else:
            if distributed:
                iterator_stop.fill_(1)
                torch.distributed.all_reduce(iterator_stop, torch.distributed.ReduceOp.SUM)


def _test_fault_point(name: str, rank: int):
    """Fault injection for the reliability tests.  ``ESPNET_BILEVEL_TEST_SIGKILL_AT`` /
    ``ESPNET_BILEVEL_TEST_RAISE_AT`` = "<epoch>:<step>[:<rank>]" make the process SIGKILL itself
    (a pre-empted job) or raise (a crashing rank) right after that optimizer step, before any
    checkpoint of that step is written.  Without a rank every rank is hit."""
    v = os.environ.get(name)
    if not v:
        return None
    parts = [int(x) for x in v.split(":")]
    if len(parts) == 3 and parts[2] != rank:
        return None
    return parts[0], parts[1]


def row_seed(seed: int, epoch: int, step: int, micro: int, utt_id: str) -> int:
    """A 63-bit seed for one utterance at one step: the same on every rank and for every batch
    composition, so SSL randomness (CPC split points, ...) is independent of DDP sharding."""
    digest = hashlib.blake2b(f"{seed}|{epoch}|{step}|{micro}|{utt_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") & ((1 << 63) - 1)


def _f(x) -> Optional[float]:
    return None if x is None else float(x)
