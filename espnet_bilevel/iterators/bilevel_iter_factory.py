"""Two data streams — labeled and unlabeled — served as one stream of training steps.

ESPnet's ``Trainer.run`` asks one iterator factory for each epoch's iterator.  Ours wraps two
ESPnet ``SequenceIterFactory`` objects (one per stream, each sharded for DDP by ESPnet) and the
solver's plan: for every step the plan says which stream(s) to draw from, so SSL-only steps never
load labeled audio and supervised-only steps never load unlabeled audio.

Determinism (what makes resume exact): each stream is consumed through ESPnet's own
``num_iters_per_epoch`` mechanism, set to the most batches any epoch of the run draws from it.
ESPnet then defines the batches of epoch k of a stream as a fixed slice of the endless,
seed-shuffled concatenation of passes over that stream, independent of what earlier epochs
consumed.  So a run resumed at epoch k sees exactly the batches an uninterrupted run sees, and
the shorter stream simply cycles.

.. note:: The unlabeled stream's batches appear in the model batch as ``speech_unlab`` /
   ``speech_unlab_lengths``; the labeled stream's keep ESPnet's names (``speech``, ``text``, ...).
"""
import itertools
import logging
import time
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from espnet2.iterators.abs_iter_factory import AbsIterFactory
from torch.utils.data import DataLoader

from espnet_bilevel.solvers.bilevel_solvers import AbsSolver
from espnet_bilevel.solvers.step_plan import StepSpec

UNLAB_KEYS = {"speech": "speech_unlab", "speech_lengths": "speech_unlab_lengths"}
UNLAB_SEED_OFFSET = 7919  # decorrelates the two streams' shuffles (both start from args.seed)


def _num_batches_per_pass(factory) -> int:
    return len(factory.sampler)


def _skip_batches(loader, n: int):
    if loader is None or n == 0:
        return loader
    if isinstance(loader, DataLoader) and isinstance(loader.batch_sampler, list):
        return DataLoader(
            dataset=loader.dataset,
            batch_sampler=loader.batch_sampler[n:],
            num_workers=loader.num_workers,
            pin_memory=loader.pin_memory,
            worker_init_fn=loader.worker_init_fn,
            collate_fn=loader.collate_fn,
        )
    return itertools.islice(loader, n, None)


class BilevelEpochIterator:
    """One epoch of steps: yields ``(spec, micro_index, utt_ids, batch)``.

    ``utt_ids`` is ``{"labeled": [...], "unlabeled": [...]}`` (empty lists for a stream the step
    does not draw from).

    ``micro_index`` runs over 0..accum_grad-1 for each plan step (gradient accumulation draws
    accum_grad mini-batches per optimizer step).  ``data_wait_time`` accumulates the seconds
    spent waiting for the data loaders, for the data-wait share that the trainer reports.
    """

    def __init__(
        self,
        epoch: int,
        plan: Iterator[StepSpec],
        num_steps: int,
        labeled: Optional[Iterator],
        unlabeled: Optional[Iterator],
        accum_grad: int = 1,
    ):
        self.epoch = epoch
        self.plan = plan
        self.num_steps = num_steps
        self.labeled = labeled
        self.unlabeled = unlabeled
        self.accum_grad = accum_grad
        self.data_wait_time = 0.0

    def skip_steps(self, n_steps: int) -> None:
        """Drop the first ``n_steps`` plan steps and the batches they would have drawn (for a
        mid-epoch resume).  ESPnet DataLoaders are rebuilt on the remaining batch list, so the
        skipped audio is never loaded."""
        plan = iter(self.plan)
        n_lab = n_unlab = 0
        for _ in range(n_steps):
            spec = next(plan)
            n_lab += spec.draws_labeled * self.accum_grad
            n_unlab += spec.draws_unlabeled * self.accum_grad
        self.plan = plan
        self.labeled = _skip_batches(self.labeled, n_lab)
        self.unlabeled = _skip_batches(self.unlabeled, n_unlab)

    def __len__(self) -> int:
        return self.num_steps

    def _draw(self, it, name: str):
        t0 = time.perf_counter()
        try:
            out = next(it)
        except StopIteration:
            # The factory was sized for the largest epoch of the run, so this is a bug.
            raise RuntimeError(
                f"the {name} stream ran out of batches in epoch {self.epoch}"
            ) from None
        self.data_wait_time += time.perf_counter() - t0
        return out

    def __iter__(self):
        lab_it = iter(self.labeled) if self.labeled is not None else None
        unlab_it = iter(self.unlabeled) if self.unlabeled is not None else None
        for spec in self.plan:
            for micro in range(self.accum_grad):
                utt_ids: Dict[str, List[str]] = {"labeled": [], "unlabeled": []}
                batch: Dict[str, torch.Tensor] = {}
                if spec.draws_labeled:
                    ids, b = self._draw(lab_it, "labeled")
                    utt_ids["labeled"] = list(ids)
                    batch.update(b)
                if spec.draws_unlabeled:
                    ids, b = self._draw(unlab_it, "unlabeled")
                    utt_ids["unlabeled"] = list(ids)
                    for k, v in b.items():
                        if k in UNLAB_KEYS:
                            batch[UNLAB_KEYS[k]] = v
                yield spec, micro, utt_ids, batch


class BilevelIterFactory(AbsIterFactory):
    """Pairs a labeled and an unlabeled ESPnet iterator factory under a solver's plan."""

    def __init__(
        self,
        solver: AbsSolver,
        labeled,
        unlabeled,
        max_epoch: int,
        accum_grad: int = 1,
        labeled_iters_per_epoch: Optional[int] = None,
    ):
        self.solver = solver
        self.labeled = labeled
        self.unlabeled = unlabeled
        self.accum_grad = int(accum_grad)
        n_lab = 0
        if labeled is not None:
            n_lab = labeled_iters_per_epoch or _num_batches_per_pass(labeled)
        n_unlab = _num_batches_per_pass(unlabeled) if unlabeled is not None else 0
        # one "step" = accum_grad mini-batches, so a pass has n/accum_grad steps
        solver.configure(
            max_epoch=max_epoch,
            n_labeled=max(n_lab // self.accum_grad, 1 if n_lab else 0),
            n_unlabeled=max(n_unlab // self.accum_grad, 1 if n_unlab else 0),
        )
        draws = [solver.draws_per_epoch(e) for e in range(1, max_epoch + 1)]
        max_lab = max((d[0] for d in draws), default=0) * self.accum_grad
        max_unlab = max((d[1] for d in draws), default=0) * self.accum_grad
        if max_lab > 0 and labeled is None:
            raise ValueError(f"solver {solver.describe()} needs labeled training data")
        if max_unlab > 0 and unlabeled is None:
            raise ValueError(
                f"solver {solver.describe()} needs unlabeled training data: give "
                "--train_unlab_data_path_and_name_and_type and --train_unlab_shape_file"
            )
        if labeled is not None:
            labeled.num_iters_per_epoch = max_lab or None
        if unlabeled is not None:
            unlabeled.num_iters_per_epoch = max_unlab or None
            unlabeled.seed = unlabeled.seed + UNLAB_SEED_OFFSET
        logging.info(
            f"bilevel streams: {n_lab} labeled / {n_unlab} unlabeled batches per pass; "
            f"each epoch draws up to {max_lab} labeled / {max_unlab} unlabeled batches"
        )

    def build_iter(self, epoch: int, shuffle: bool = None) -> BilevelEpochIterator:
        lab_draws, unlab_draws = self.solver.draws_per_epoch(epoch)
        labeled = (
            self.labeled.build_iter(epoch, shuffle)
            if (self.labeled is not None and lab_draws > 0)
            else None
        )
        unlabeled = (
            self.unlabeled.build_iter(epoch, shuffle)
            if (self.unlabeled is not None and unlab_draws > 0)
            else None
        )
        return BilevelEpochIterator(
            epoch=epoch,
            plan=self.solver.plan_epoch(epoch),
            num_steps=self.solver.steps_in_epoch(epoch),
            labeled=labeled,
            unlabeled=unlabeled,
            accum_grad=self.accum_grad,
        )
