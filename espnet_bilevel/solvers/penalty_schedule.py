"""Penalty schedules γ for penalty-based bilevel gradient descent (PBGD).

The penalized objective of BL-JUST is F_γ = f + γ·(g − v) with v = min g a constant, so a joint
step descends f + γ·g.  γ must grow for the iterates to approach the lower-level solution set
(algorithms.md §0-§1); how it grows is a schedule.  A schedule is a pure function of where the
step is, so a resumed run recomputes exactly the γ an uninterrupted run would have used.

>>> EpochLinearPenalty(gamma_max=1.0, num_epochs=4).value(epoch=3, joint_step=0)
0.5
>>> StepLinearPenalty(gamma_init=0.0, gamma_max=2.0, ramp_steps=4).value(epoch=1, joint_step=2)
1.0

.. note:: Every schedule here is non-decreasing in (epoch, joint_step) and never negative.
"""
from abc import ABC, abstractmethod
from typing import Dict, Type


class AbsPenaltySchedule(ABC):
    """γ as a function of the bilevel epoch (1-based) and the global joint-step index (0-based)."""

    @abstractmethod
    def value(self, epoch: int, joint_step: int) -> float:
        raise NotImplementedError

    @staticmethod
    def _check_nonneg(name: str, x: float) -> float:
        if x is None or float(x) < 0:
            raise ValueError(f"penalty_schedule_conf.{name} must be >= 0, got {x!r}")
        return float(x)


class ConstantPenalty(AbsPenaltySchedule):
    """γ_k = gamma for every step (BiRQ's fixed w2/w1; a JUST-like weighted sum)."""

    def __init__(self, gamma: float = 1.0):
        self.gamma = self._check_nonneg("gamma", gamma)

    def value(self, epoch: int, joint_step: int) -> float:
        return self.gamma


class EpochLinearPenalty(AbsPenaltySchedule):
    """BL-JUST Algorithm 1: γ_k = (k − 1)·γ_max / K for bilevel epoch k = 1..K.

    Epoch 1 therefore runs its joint steps with γ = 0 (pure supervised), and γ reaches
    (K − 1)/K·γ_max in the last bilevel epoch, exactly as the journal algorithm writes it.
    ``num_epochs`` (K) is filled in by the solver from ``max_epoch`` when left at None.
    """

    def __init__(self, gamma_max: float = 1.0, num_epochs: int = None):
        self.gamma_max = self._check_nonneg("gamma_max", gamma_max)
        if num_epochs is not None and int(num_epochs) < 1:
            raise ValueError(f"penalty_schedule_conf.num_epochs must be >= 1, got {num_epochs!r}")
        self.num_epochs = None if num_epochs is None else int(num_epochs)

    def value(self, epoch: int, joint_step: int) -> float:
        if self.num_epochs is None:
            raise RuntimeError("EpochLinearPenalty.num_epochs is unset (the solver sets it)")
        k = min(max(int(epoch), 1), self.num_epochs)
        return (k - 1) * self.gamma_max / self.num_epochs


class StepLinearPenalty(AbsPenaltySchedule):
    """PBGD code's ramp: γ grows linearly from gamma_init to gamma_max over ramp_steps joint steps,
    then stays at gamma_max.  ``ramp_steps = 0`` means γ = gamma_max from the first step."""

    def __init__(self, gamma_init: float = 0.0, gamma_max: float = 1.0, ramp_steps: int = 1000):
        self.gamma_init = self._check_nonneg("gamma_init", gamma_init)
        self.gamma_max = self._check_nonneg("gamma_max", gamma_max)
        if self.gamma_max < self.gamma_init:
            raise ValueError(
                f"penalty_schedule_conf.gamma_max ({gamma_max}) must be >= gamma_init ({gamma_init})"
            )
        if ramp_steps is None or int(ramp_steps) < 0:
            raise ValueError(f"penalty_schedule_conf.ramp_steps must be >= 0, got {ramp_steps!r}")
        self.ramp_steps = int(ramp_steps)

    def value(self, epoch: int, joint_step: int) -> float:
        if self.ramp_steps == 0 or joint_step >= self.ramp_steps:
            return self.gamma_max
        frac = joint_step / self.ramp_steps
        return self.gamma_init + (self.gamma_max - self.gamma_init) * frac


penalty_schedules: Dict[str, Type[AbsPenaltySchedule]] = dict(
    constant=ConstantPenalty,
    epoch_linear=EpochLinearPenalty,
    step_linear=StepLinearPenalty,
)


def build_penalty_schedule(name: str, conf: dict) -> AbsPenaltySchedule:
    """Build a schedule by registry name; unknown names and keys give one clear error."""
    if name not in penalty_schedules:
        raise ValueError(
            f"unknown penalty_schedule {name!r}; choose one of {sorted(penalty_schedules)}"
        )
    if conf is not None and not isinstance(conf, dict):
        # e.g. --solver_conf penalty_schedule_conf=gamma_max=10 arrives as the string "gamma_max=10"
        raise ValueError(
            f"penalty_schedule_conf must be a mapping, got {type(conf).__name__} {conf!r}; "
            f"on the command line write --solver_conf 'penalty_schedule_conf={{\"gamma_max\": 10}}'"
        )
    try:
        return penalty_schedules[name](**(conf or {}))
    except TypeError as e:
        raise ValueError(f"bad penalty_schedule_conf for {name!r}: {e}") from None
