"""Solvers: how a training epoch combines the upper level f (supervised) and lower level g (SSL).

A solver is a pure function ``plan_epoch(epoch) -> iterator of StepSpec``: given the epoch number
and the sizes of the two data streams it yields every step of that epoch (lazily: a LibriSpeech
epoch has tens of thousands of steps).  Nothing about a solver is
stateful, so resuming at any epoch reproduces the uninterrupted run exactly, and every rank of a
DDP job takes the same phase at the same step.

All five systems of our comparisons share this code path, so the baselines are honest:

* ``bljust``       BL-JUST Algorithm 1: per epoch N1 SSL-exploration steps, N2 penalized joint
                   steps with γ_k from a penalty schedule, then ``finetune_epochs`` of f only.
* ``weighted_sum`` Google JUST-style: f + λ·g with a constant λ every step.
* ``alternating``  one SSL step, then one supervised step.
* ``supervised``   f only (the supervised baseline and the FT half of PT+FT).
* ``pretrain``     g only (the PT half of PT+FT).
"""
from abc import ABC, abstractmethod
from typing import Iterator, Optional, Tuple

from espnet_bilevel.solvers.penalty_schedule import (
    EpochLinearPenalty,
    build_penalty_schedule,
)
from espnet_bilevel.solvers.step_plan import StepSpec, joint_step, lower_step, upper_step


def _positive_int_or_none(name: str, x) -> Optional[int]:
    if x is None:
        return None
    if isinstance(x, bool) or int(x) != x or int(x) < 0:
        raise ValueError(f"solver_conf.{name} must be a non-negative integer or null, got {x!r}")
    return int(x)


def _passes_or_none(name: str, x, allow_zero: bool) -> Optional[float]:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)) or x < 0 or (x == 0 and not allow_zero):
        need = "a number >= 0" if allow_zero else "a number > 0"
        raise ValueError(f"solver_conf.{name} must be {need} (passes over the data) or null, got {x!r}")
    return float(x)


def _steps_of_passes(passes: float, batches_per_pass: int) -> int:
    """Steps for ``passes`` passes over a stream of ``batches_per_pass`` batches: 0 passes -> 0,
    otherwise at least one step."""
    return 0 if passes == 0 else max(1, round(passes * batches_per_pass))


class AbsSolver(ABC):
    """Decides every step of an epoch.

    ``configure`` is called once by the trainer, before the first epoch, with ``max_epoch`` and the
    number of batches in one pass over each stream (per rank; with DDP every global batch is
    split across ranks, so the counts are equal on all ranks).
    """

    uses_labeled: bool = True
    uses_unlabeled: bool = True

    def configure(self, max_epoch: int, n_labeled: int, n_unlabeled: int) -> None:
        self.max_epoch = int(max_epoch)
        self.n_labeled = int(n_labeled)
        self.n_unlabeled = int(n_unlabeled)

    @abstractmethod
    def plan_epoch(self, epoch: int) -> Iterator[StepSpec]:
        raise NotImplementedError

    @abstractmethod
    def draws_per_epoch(self, epoch: int) -> Tuple[int, int]:
        """(labeled batches, unlabeled batches) that epoch ``epoch`` consumes (= what
        ``plan_epoch`` yields; a unit test checks the two agree for every solver)."""
        raise NotImplementedError

    def steps_in_epoch(self, epoch: int) -> int:
        lab, unlab = self.draws_per_epoch(epoch)
        return self._num_steps(epoch, lab, unlab)

    def _num_steps(self, epoch: int, lab: int, unlab: int) -> int:
        return max(lab, unlab)

    def describe(self) -> str:
        return type(self).__name__


class SupervisedSolver(AbsSolver):
    """f only: ``steps_per_epoch`` (default: one pass over the labeled set) upper steps."""

    uses_unlabeled = False

    def __init__(self, steps_per_epoch: int = None):
        self.steps_per_epoch = _positive_int_or_none("steps_per_epoch", steps_per_epoch)

    def _n(self) -> int:
        return self.steps_per_epoch or self.n_labeled

    def plan_epoch(self, epoch: int) -> Iterator[StepSpec]:
        step = upper_step()
        for _ in range(self._n()):
            yield step

    def draws_per_epoch(self, epoch: int) -> Tuple[int, int]:
        return self._n(), 0


class PretrainSolver(AbsSolver):
    """g only: ``steps_per_epoch`` (default: one pass over the unlabeled set) lower steps."""

    uses_labeled = False

    def __init__(self, steps_per_epoch: int = None):
        self.steps_per_epoch = _positive_int_or_none("steps_per_epoch", steps_per_epoch)

    def _n(self) -> int:
        return self.steps_per_epoch or self.n_unlabeled

    def plan_epoch(self, epoch: int) -> Iterator[StepSpec]:
        step = lower_step()
        for _ in range(self._n()):
            yield step

    def draws_per_epoch(self, epoch: int) -> Tuple[int, int]:
        return 0, self._n()


class WeightedSumSolver(AbsSolver):
    """JUST-style joint training: every step descends f + ssl_weight·g (λ constant)."""

    def __init__(self, ssl_weight: float = 1.0, steps_per_epoch: int = None):
        if ssl_weight is None or float(ssl_weight) < 0:
            raise ValueError(f"solver_conf.ssl_weight must be >= 0, got {ssl_weight!r}")
        self.ssl_weight = float(ssl_weight)
        self.steps_per_epoch = _positive_int_or_none("steps_per_epoch", steps_per_epoch)

    def _n(self) -> int:
        return self.steps_per_epoch or self.n_labeled

    def plan_epoch(self, epoch: int) -> Iterator[StepSpec]:
        step = joint_step(self.ssl_weight)
        for _ in range(self._n()):
            yield step

    def draws_per_epoch(self, epoch: int) -> Tuple[int, int]:
        return self._n(), self._n()


class AlternatingSolver(AbsSolver):
    """Alternate one SSL step (optim2) and one supervised step (optim), ``steps_per_epoch`` pairs."""

    def __init__(self, steps_per_epoch: int = None):
        self.steps_per_epoch = _positive_int_or_none("steps_per_epoch", steps_per_epoch)

    def _n(self) -> int:
        return self.steps_per_epoch or self.n_labeled

    def plan_epoch(self, epoch: int) -> Iterator[StepSpec]:
        lower, upper = lower_step(), upper_step()
        for _ in range(self._n()):
            yield lower
            yield upper

    def draws_per_epoch(self, epoch: int) -> Tuple[int, int]:
        return self._n(), self._n()

    def _num_steps(self, epoch: int, lab: int, unlab: int) -> int:
        return lab + unlab


class BLJUSTSolver(AbsSolver):
    """BL-JUST (algorithms.md §1.2): penalty-based bilevel gradient descent with exploration.

    For bilevel epoch k = 1..K (K = max_epoch − finetune_epochs):

    1. ``n_explore`` (N1) SSL-exploration steps on (θ, η) with optimizer 2 (lr ρ);
    2. ``n_joint`` (N2) penalized joint steps with optimizer 1 (lr α): θ gets ∇f + γ∇g,
       φ gets ∇f, η gets γ∇g, γ from ``penalty_schedule``;

    then ``finetune_epochs`` epochs of ``finetune_steps_per_epoch`` (N3 per epoch) supervised
    steps on (θ, φ) with optimizer 1 at lr τ = ``finetune_lr_scale`` · α.

    Options (YAML ``solver_conf``):
        n_explore: N1 per epoch; null = one pass over the unlabeled set.  0 disables exploration.
        n_joint: N2 per epoch; null = one pass over the labeled set.  Must be > 0.
        n_explore_passes, n_joint_passes: N1 / N2 in passes over the stream instead of steps
            (N = max(1, round(passes x batches per pass)); n_explore_passes 0 disables exploration).
            A plan in passes follows the data: with twice the labeled utterances, twice the joint
            steps, as supervised training and fine-tuning get (the label-budget curve needs that).
            Each excludes its step count (n_explore / n_joint).
        explore_from_epoch: first bilevel epoch with SSL exploration (default 1 = every epoch, as
            Algorithm 1); the bilevel epochs before it make only their N2 joint steps.  Exploration
            from a random start can hold the CTC path back for several epochs, which on small
            labeled sets decides how good the run ends (egs2/mini_synth/asr1/README.md).
        finetune_epochs: number of final supervised epochs (0 = none).  Default 1.
        finetune_steps_per_epoch: null = one pass over the labeled set.
        finetune_lr_scale: τ/α.  Default 0.1 (the authors' code: 1e-5 after 1e-4).
        penalty_schedule: ``epoch_linear`` (Algorithm 1: (k−1)γ_max/K), ``step_linear`` or
            ``constant``.  Default ``epoch_linear``.
        penalty_schedule_conf: options of the schedule, e.g. ``{gamma_max: 1.0}``.
        loss_scaling: multiply the joint loss by min(1, 1/γ) (PBGD code).  Default false.
    """

    def __init__(
        self,
        n_explore: int = None,
        n_joint: int = None,
        n_explore_passes: float = None,
        n_joint_passes: float = None,
        explore_from_epoch: int = 1,
        finetune_epochs: int = 1,
        finetune_steps_per_epoch: int = None,
        finetune_lr_scale: float = 0.1,
        penalty_schedule: str = "epoch_linear",
        penalty_schedule_conf: dict = None,
        loss_scaling: bool = False,
    ):
        self.n_explore = _positive_int_or_none("n_explore", n_explore)
        if n_joint is not None and _positive_int_or_none("n_joint", n_joint) == 0:
            raise ValueError(
                "solver_conf.n_joint = 0 leaves BL-JUST without its penalized joint steps; "
                "use n_joint > 0 (or solver: pretrain for SSL only)"
            )
        self.n_joint = _positive_int_or_none("n_joint", n_joint)
        self.n_explore_passes = _passes_or_none("n_explore_passes", n_explore_passes, allow_zero=True)
        self.n_joint_passes = _passes_or_none("n_joint_passes", n_joint_passes, allow_zero=False)
        for steps, passes in (("n_explore", "n_explore_passes"), ("n_joint", "n_joint_passes")):
            if getattr(self, steps) is not None and getattr(self, passes) is not None:
                raise ValueError(f"solver_conf: give {steps} (steps) or {passes} (passes over the data), not both")
        if isinstance(explore_from_epoch, bool) or not isinstance(explore_from_epoch, int) or explore_from_epoch < 1:
            raise ValueError(
                f"solver_conf.explore_from_epoch must be an integer >= 1 (a bilevel epoch), got {explore_from_epoch!r}"
            )
        self.explore_from_epoch = explore_from_epoch
        self.finetune_epochs = _positive_int_or_none("finetune_epochs", finetune_epochs) or 0
        self.finetune_steps_per_epoch = _positive_int_or_none(
            "finetune_steps_per_epoch", finetune_steps_per_epoch
        )
        if finetune_lr_scale is None or float(finetune_lr_scale) <= 0:
            raise ValueError(f"solver_conf.finetune_lr_scale must be > 0, got {finetune_lr_scale!r}")
        self.finetune_lr_scale = float(finetune_lr_scale)
        self.schedule = build_penalty_schedule(penalty_schedule, penalty_schedule_conf or {})
        self.penalty_schedule = penalty_schedule
        self.loss_scaling = bool(loss_scaling)

    def configure(self, max_epoch: int, n_labeled: int, n_unlabeled: int) -> None:
        super().configure(max_epoch, n_labeled, n_unlabeled)
        self.num_bilevel_epochs = self.max_epoch - self.finetune_epochs
        if self.num_bilevel_epochs < 1:
            raise ValueError(
                f"solver_conf.finetune_epochs ({self.finetune_epochs}) must be smaller than "
                f"max_epoch ({self.max_epoch}): BL-JUST needs at least one bilevel epoch"
            )
        if isinstance(self.schedule, EpochLinearPenalty) and self.schedule.num_epochs is None:
            self.schedule.num_epochs = self.num_bilevel_epochs
        if self.explore_from_epoch > self.num_bilevel_epochs and self._n_explore_per_epoch() > 0:
            raise ValueError(
                f"solver_conf.explore_from_epoch ({self.explore_from_epoch}) is after the last bilevel epoch "
                f"({self.num_bilevel_epochs} = max_epoch - finetune_epochs): no SSL exploration would run; "
                "use n_explore_passes: 0 to switch it off"
            )

    def _n_explore(self, epoch: int) -> int:
        return self._n_explore_per_epoch() if epoch >= self.explore_from_epoch else 0

    def _n_explore_per_epoch(self) -> int:
        if self.n_explore_passes is not None:
            return _steps_of_passes(self.n_explore_passes, self.n_unlabeled)
        return self.n_unlabeled if self.n_explore is None else self.n_explore

    @property
    def _n_joint(self) -> int:
        if self.n_joint_passes is not None:
            return _steps_of_passes(self.n_joint_passes, self.n_labeled)
        return self.n_labeled if self.n_joint is None else self.n_joint

    def gamma(self, epoch: int, joint_index_in_epoch: int) -> float:
        """γ of the i-th joint step (0-based) of bilevel epoch ``epoch`` (1-based)."""
        global_joint_step = (epoch - 1) * self._n_joint + joint_index_in_epoch
        return self.schedule.value(epoch, global_joint_step)

    def is_finetune_epoch(self, epoch: int) -> bool:
        return epoch > self.num_bilevel_epochs

    def plan_epoch(self, epoch: int) -> Iterator[StepSpec]:
        if self.is_finetune_epoch(epoch):
            step = upper_step(lr_scale=self.finetune_lr_scale)
            for _ in range(self.finetune_steps_per_epoch or self.n_labeled):
                yield step
            return
        lower = lower_step()
        for _ in range(self._n_explore(epoch)):
            yield lower
        for i in range(self._n_joint):
            yield joint_step(self.gamma(epoch, i), loss_scaling=self.loss_scaling)

    def draws_per_epoch(self, epoch: int) -> Tuple[int, int]:
        if self.is_finetune_epoch(epoch):
            return self.finetune_steps_per_epoch or self.n_labeled, 0
        return self._n_joint, self._n_explore(epoch) + self._n_joint

    def _num_steps(self, epoch: int, lab: int, unlab: int) -> int:
        return lab if self.is_finetune_epoch(epoch) else unlab


SOLVERS = dict(
    bljust=BLJUSTSolver,
    weighted_sum=WeightedSumSolver,
    alternating=AlternatingSolver,
    supervised=SupervisedSolver,
    pretrain=PretrainSolver,
)


def is_joint_solver(name: str) -> bool:
    """True for a registered solver that trains on both levels (f and g together: weighted_sum,
    alternating, bljust), False for supervised, pretrain and unknown names."""
    cls = SOLVERS.get(name)
    return cls is not None and cls.uses_labeled and cls.uses_unlabeled
