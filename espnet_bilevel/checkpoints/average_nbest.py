"""N-best checkpoint averaging that does not corrupt its inputs.

This module replaces ``espnet2.main_funcs.average_nbest_models.average_nbest_models``
(ESPnet 202511).  The stock function starts every running sum from the state dict it
cached for the first epoch of the average and adds the other epochs into that same dict.
The cache entry is therefore overwritten with a sum/average, and any later average that
reuses the epoch (a second ``best_model_criterion`` whose n-best overlaps, or a second
value in ``nbest``) silently averages a corrupted model.  It also sums integer tensors
such as ``BatchNorm.num_batches_tracked``.

What this module does instead:

* every average is computed into a fresh float64 accumulator; the state dicts that were
  loaded (and cached so that each epoch file is read at most once) are never modified;
* floating-point (and complex) tensors get the element-wise mean of the selected epochs,
  cast back to their original dtype;
* integer and bool tensors (``num_batches_tracked``, step counters, masks) are taken from
  the newest selected epoch, i.e. the one with the largest epoch number.  A mean of a
  counter has no meaning and ESPnet's sum overstates it n times; the newest epoch's value
  is the one a model trained up to that point really had;
* non-tensor entries are also copied from the newest selected epoch;
* files and symlinks are written to a temporary name in the same directory and moved into
  place with ``os.replace``, so an interrupted run never leaves a half-written ``.pth``.

The file names are ESPnet's: ``<phase>.<key>.ave_<n>best[.<suffix>].pth`` for every ``n``
and the symlink ``<phase>.<key>.ave[.<suffix>].pth`` pointing at the largest ``n``.  For
``n == 1`` a real file is written (ESPnet makes a symlink to ``<epoch>epoch.pth``, which
dangles once ESPnet deletes that epoch file after an intermediate ``till<N>epoch``
average).
"""

from __future__ import annotations

import copy
import logging
import os
import secrets
import warnings
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Collection,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import torch

if TYPE_CHECKING:  # importing espnet2 is slow; the reporter is only duck-typed here
    from espnet2.train.reporter import Reporter

logger = logging.getLogger(__name__)

StateDict = Dict[str, Any]
StateDictLoader = Callable[[Path], Mapping[str, Any]]


class CheckpointFileError(RuntimeError):
    """A checkpoint file exists but cannot be read as a state dict."""


# --------------------------------------------------------------------------------------
# Pure averaging
# --------------------------------------------------------------------------------------
def _is_averaged(tensor: torch.Tensor) -> bool:
    return tensor.is_floating_point() or tensor.is_complex()


def average_state_dicts(state_dicts_in_epoch_order: Sequence[Mapping[str, Any]]) -> StateDict:
    """Average model state dicts without modifying any of them.

    Args:
        state_dicts_in_epoch_order: state dicts sorted by ascending epoch number; the last
            one is treated as the newest epoch.

    Returns:
        A new dict with the same keys (in the order of the newest state dict):

        * floating-point / complex tensors: element-wise mean over all inputs, summed in
          float64 (complex128) and cast back to the input dtype;
        * integer and bool tensors (e.g. ``num_batches_tracked``): a clone of the newest
          epoch's tensor, because averaging (or, as ESPnet does, summing) a counter gives
          a value no trained model ever had;
        * anything else: a deep copy of the newest epoch's value.

        No returned tensor shares storage with an input, so callers may cache the inputs.

    Raises:
        ValueError: empty input, or state dicts whose keys, shapes or dtypes differ.
    """
    if len(state_dicts_in_epoch_order) == 0:
        raise ValueError("average_state_dicts needs at least one state dict")
    newest = state_dicts_in_epoch_order[-1]
    expected_keys = list(newest.keys())
    for position, state in enumerate(state_dicts_in_epoch_order):
        if set(state.keys()) != set(expected_keys):
            missing = sorted(set(expected_keys) - set(state.keys()))
            extra = sorted(set(state.keys()) - set(expected_keys))
            raise ValueError(
                f"state dict #{position} has different keys from the newest one "
                f"(missing: {missing[:5]}, extra: {extra[:5]})"
            )

    count = len(state_dicts_in_epoch_order)
    averaged: StateDict = {}
    for key in expected_keys:
        newest_value = newest[key]
        if not isinstance(newest_value, torch.Tensor):
            averaged[key] = copy.deepcopy(newest_value)
            continue
        for state in state_dicts_in_epoch_order:
            other = state[key]
            if (
                not isinstance(other, torch.Tensor)
                or other.shape != newest_value.shape
                or other.dtype != newest_value.dtype
            ):
                described = (
                    f"{tuple(other.shape)} {other.dtype}"
                    if isinstance(other, torch.Tensor)
                    else type(other).__name__
                )
                raise ValueError(
                    f"cannot average {key!r}: {described} vs newest "
                    f"{tuple(newest_value.shape)} {newest_value.dtype}"
                )
        if not _is_averaged(newest_value):
            averaged[key] = newest_value.detach().clone()
            continue
        accumulator_dtype = torch.complex128 if newest_value.is_complex() else torch.float64
        # torch.zeros gives a new tensor, so the inputs (possibly cached) stay untouched.
        total = torch.zeros(newest_value.shape, dtype=accumulator_dtype)
        for state in state_dicts_in_epoch_order:
            total += state[key].detach().to(device="cpu", dtype=accumulator_dtype)
        averaged[key] = (total / count).to(newest_value.dtype)
    return averaged


# --------------------------------------------------------------------------------------
# File helpers
# --------------------------------------------------------------------------------------
def load_state_dict_file(path: Union[str, Path]) -> Mapping[str, Any]:
    """Load a ``<N>epoch.pth``-style state dict onto the CPU.

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
        CheckpointFileError: the file exists but is not a readable state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        # weights_only=False like ESPnet: these are our own training outputs and a model's
        # state dict may legitimately hold non-tensor extra state.
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for truncated/corrupt files
        raise CheckpointFileError(f"cannot read checkpoint file {path}: {exc}") from exc
    if not isinstance(state, Mapping):
        raise CheckpointFileError(
            f"checkpoint file {path} holds a {type(state).__name__}, not a state dict"
        )
    return state


def _temporary_sibling(path: Path) -> Path:
    """A fresh, unused name in ``path``'s directory (same filesystem, so os.replace is atomic)."""
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def save_atomically(obj: Any, path: Union[str, Path]) -> None:
    """``torch.save`` to a temporary file next to ``path``, then ``os.replace`` it.

    ``os.replace`` swaps the directory entry, so if ``path`` is a symlink (ESPnet's
    1-best "average") the link is replaced and the epoch file it points to is kept.
    """
    path = Path(path)
    tmp_path = _temporary_sibling(path)
    try:
        # O_EXCL: never reuse someone else's file; mode 0o666 lets the umask decide the
        # permissions, as for a plain torch.save (mkstemp would force 0o600).
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as tmp_file:
            torch.save(obj, tmp_file)
            tmp_file.flush()
            os.fsync(tmp_file.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.lexists(tmp_path):
            os.unlink(tmp_path)
        raise


def symlink_atomically(target_name: str, link_path: Union[str, Path]) -> None:
    """Point ``link_path`` at ``target_name`` (relative), replacing any old entry atomically."""
    link_path = Path(link_path)
    tmp_path = _temporary_sibling(link_path)
    try:
        os.symlink(target_name, tmp_path)
        os.replace(tmp_path, link_path)
    except BaseException:
        if os.path.lexists(tmp_path):
            os.unlink(tmp_path)
        raise


def average_checkpoint_files(
    input_paths_in_epoch_order: Sequence[Union[str, Path]],
    output_path: Union[str, Path],
    load: StateDictLoader = load_state_dict_file,
) -> StateDict:
    """Average state-dict files (oldest epoch first) and write the result atomically.

    ``load`` may be a caching loader; whatever it returns is only read.  Returns the
    averaged state dict.
    """
    states = [load(Path(p)) for p in input_paths_in_epoch_order]
    averaged = average_state_dicts(states)
    save_atomically(averaged, output_path)
    return averaged


# --------------------------------------------------------------------------------------
# Drop-in replacement for ESPnet's average_nbest_models
# --------------------------------------------------------------------------------------
def _epoch_checkpoint_path(output_dir: Path, epoch: int, use_deepspeed: bool) -> Path:
    if use_deepspeed:
        return output_dir / f"checkpoint_{epoch}" / f"{epoch}" / "mp_rank_00_model_states.pt"
    return output_dir / f"{epoch}epoch.pth"


def _normalise_nbest(nbest: Union[Collection[int], int]) -> List[int]:
    nbests = [nbest] if isinstance(nbest, int) else list(nbest)
    if len(nbests) == 0:
        warnings.warn("At least 1 nbest values are required")
        nbests = [1]
    return nbests


def select_nbest_epochs(
    reporter: "Reporter",
    best_model_criterion: Sequence[Sequence[str]],
    nbest: Union[Collection[int], int],
) -> List[Tuple[str, str, List[Tuple[int, List[int]]]]]:
    """Decide which epochs every average uses, with ESPnet's rules.

    Returns ``[(phase, key, [(n, epochs_in_rank_order), ...]), ...]``.  Criteria the
    reporter does not have are skipped; ``n`` larger than the number of ranked epochs is
    dropped, falling back to ``[1]`` when nothing is left; ``n == 0`` is ignored.
    """
    nbests = _normalise_nbest(nbest)
    selections = []
    for phase, key, mode in best_model_criterion:
        if not reporter.has(phase, key):
            continue
        ranked = reporter.sort_epochs_and_values(phase, key, mode)[: max(nbests)]
        usable = [n for n in nbests if n <= len(ranked)] or [1]
        per_n = [(n, [epoch for epoch, _ in ranked[:n]]) for n in usable if n > 0]
        selections.append((phase, key, per_n))
    return selections


@torch.no_grad()
def average_nbest_models(
    output_dir: Path,
    reporter: "Reporter",
    best_model_criterion: Sequence[Sequence[str]],
    nbest: Union[Collection[int], int],
    suffix: Optional[str] = None,
    use_deepspeed: bool = False,
) -> None:
    """Write the n-best averaged models of every criterion (drop-in for ESPnet's).

    Args:
        output_dir: directory holding ``<N>epoch.pth`` (or DeepSpeed's
            ``checkpoint_<N>/<N>/mp_rank_00_model_states.pt`` when ``use_deepspeed``).
        reporter: an ``espnet2.train.reporter.Reporter`` with the per-epoch values.
        best_model_criterion: e.g. ``[("valid", "loss", "min"), ("valid", "acc", "max")]``.
        nbest: one ``n`` or several; one average is written per usable ``n``.
        suffix: inserted before ``.pth``, e.g. ``"till10epoch"``.
        use_deepspeed: read DeepSpeed model states (the ``"module"`` entry) instead.

    Every average is computed by :func:`average_state_dicts` into a fresh accumulator:
    float tensors are the exact mean, integer tensors (``num_batches_tracked``) and
    non-tensor entries come from the newest selected epoch (largest epoch number).
    All selected epoch files are checked before anything is written; if any is missing a
    ``FileNotFoundError`` lists them.  Each epoch file is loaded at most once.
    """
    output_dir = Path(output_dir)
    suffix_part = "" if suffix is None else f"{suffix}."
    selections = select_nbest_epochs(reporter, best_model_criterion, nbest)

    # Check every needed input first, so a missing file fails before any output changes.
    missing: Dict[Path, List[str]] = {}
    for phase, key, per_n in selections:
        for n, epochs in per_n:
            for epoch in epochs:
                path = _epoch_checkpoint_path(output_dir, epoch, use_deepspeed)
                if not path.is_file():
                    missing.setdefault(path, []).append(f"{phase}.{key}.ave_{n}best")
    if missing:
        details = "; ".join(
            f"{path} (needed by {', '.join(sorted(set(users)))})"
            for path, users in sorted(missing.items())
        )
        raise FileNotFoundError(f"missing epoch checkpoint(s) for n-best averaging: {details}")

    # The cache keeps each epoch's file read once; average_state_dicts never writes to it.
    loaded: Dict[Path, Mapping[str, Any]] = {}

    def load_cached(path: Path) -> Mapping[str, Any]:
        if path not in loaded:
            state = load_state_dict_file(path)
            if use_deepspeed:
                if "module" not in state:
                    raise CheckpointFileError(f"no 'module' entry in DeepSpeed states {path}")
                state = state["module"]
            loaded[path] = state
        return loaded[path]

    for phase, key, per_n in selections:
        for n, epochs_in_rank_order in per_n:
            output_path = output_dir / f"{phase}.{key}.ave_{n}best.{suffix_part}pth"
            logger.info(f'Averaging {n}best models: criterion="{phase}.{key}": {output_path}')
            input_paths = [
                _epoch_checkpoint_path(output_dir, epoch, use_deepspeed)
                for epoch in sorted(epochs_in_rank_order)
            ]
            average_checkpoint_files(input_paths, output_path, load=load_cached)

        # <phase>.<key>.ave[.<suffix>].pth points at the average over the most epochs.
        largest_n = max((n for n, _ in per_n), default=None)
        if largest_n is None:
            continue
        link_path = output_dir / f"{phase}.{key}.ave.{suffix_part}pth"
        symlink_atomically(f"{phase}.{key}.ave_{largest_n}best.{suffix_part}pth", link_path)
