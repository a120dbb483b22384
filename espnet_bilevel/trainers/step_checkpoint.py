"""Mid-epoch checkpoints: resume a bilevel run from any step, not only from epoch boundaries.

ESPnet writes ``checkpoint.pth`` once per epoch; on a cluster that pre-empts jobs, hours of an
epoch are lost.  With ``--step_checkpoint_interval N`` the bilevel trainer also writes, every N
optimizer steps, ``<output_dir>/step_checkpoints/epoch<E>_step<S>.pth`` holding everything the
rest of the epoch depends on:

* model, every optimizer and scheduler, the AMP scaler;
* the position: epoch E and plan step S (the solver's plan gives the phase and γ of every later
  step, and how many batches each data stream has already served);
* the RNG states (torch, numpy, python), so dropout and SpecAugment continue identically.

Files are written atomically (temporary file, then rename) and only the newest two are kept.
On ``--resume true`` the newest readable one that continues the epoch after ``checkpoint.pth``
is used; an unreadable newest file is skipped with a warning in favour of the previous one.

.. note:: the per-epoch training statistics of a resumed epoch cover the steps run after the
   resume only; parameters and everything that determines them are restored exactly.
"""
import contextlib
import logging
import os
import random
import re
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch

STEP_DIR = "step_checkpoints"
KEEP = 2
_NAME = re.compile(r"^epoch(\d+)_step(\d+)\.pth$")


def atomic_torch_save(obj, path) -> None:
    """torch.save into a temporary file in the same directory, then rename into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        _ORIGINAL_SAVE(obj, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


_ORIGINAL_SAVE = torch.save


@contextlib.contextmanager
def atomic_torch_saves():
    """Make every ``torch.save(obj, <path>)`` atomic while active (ESPnet's Trainer.run writes
    checkpoint.pth and the epoch files in place; a kill mid-write would leave them corrupt)."""

    def save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and not args and not kwargs:
            return atomic_torch_save(obj, f)
        return _ORIGINAL_SAVE(obj, f, *args, **kwargs)

    torch.save = save
    try:
        yield
    finally:
        torch.save = _ORIGINAL_SAVE


def rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_step_checkpoint(
    output_dir, epoch: int, step: int, model, optimizers, schedulers, scaler
) -> Path:
    d = Path(output_dir) / STEP_DIR
    path = d / f"epoch{epoch}_step{step}.pth"
    atomic_torch_save(
        {
            "epoch": epoch,
            "step": step,
            "model": model.state_dict(),
            "optimizers": [o.state_dict() for o in optimizers],
            "schedulers": [s.state_dict() if s is not None else None for s in schedulers],
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(),
        },
        path,
    )
    for old in list_step_checkpoints(output_dir)[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def list_step_checkpoints(output_dir) -> List[Path]:
    """Step checkpoint files, oldest first."""
    d = Path(output_dir) / STEP_DIR
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _NAME.match(p.name)
        if m:
            found.append(((int(m.group(1)), int(m.group(2))), p))
    return [p for _, p in sorted(found)]


def load_resumable_step_checkpoint(output_dir, next_epoch: int) -> Optional[dict]:
    """The newest readable step checkpoint of epoch ``next_epoch`` (the epoch that follows the
    last completed one), or None.  Unreadable files are skipped with a warning."""
    for path in reversed(list_step_checkpoints(output_dir)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # truncated or corrupt file: fall back to the previous one
            logging.warning(f"step checkpoint {path} is unreadable ({e}); trying the previous one")
            continue
        if state.get("epoch") == next_epoch:
            logging.info(f"resuming mid-epoch from {path} (epoch {next_epoch}, step {state['step']})")
            state["path"] = str(path)
            return state
        return None  # the newest readable one belongs to another epoch: nothing to resume
    return None


def restore(state: dict, model, optimizers: Sequence, schedulers: Sequence, scaler) -> dict:
    """Load model/optimizer/scheduler/scaler state; returns the RNG state, which the caller
    must set only once the epoch's DataLoader iterators exist (creating one draws a base seed
    from the global RNG, which the uninterrupted run did before the checkpointed step)."""
    model.load_state_dict(state["model"])
    for o, s in zip(optimizers, state["optimizers"]):
        o.load_state_dict(s)
    for sch, s in zip(schedulers, state["schedulers"]):
        if sch is not None and s is not None:
            sch.load_state_dict(s)
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    return state["rng"]
