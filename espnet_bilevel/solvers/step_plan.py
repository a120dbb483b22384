"""What a single training step does, as decided by a solver.

A step is one forward + one backward + one optimizer update.  Its *phase* says which data it
draws and which objective it descends:

=========  ===================  ==========================================  =============
phase      data drawn           loss (one backward)                         optimizer
=========  ===================  ==========================================  =============
``lower``  one unlabeled batch  ssl_weight · g(θ, η)                        ``optim2``
``joint``  both batches         sup_weight · f(θ, φ) + ssl_weight · g(θ, η)  ``optim``
``upper``  one labeled batch    sup_weight · f(θ, φ)                        ``optim``
=========  ===================  ==========================================  =============

Because φ (CTC/decoder) takes no part in g and η (the SSL head) none in f, one backward of the
weighted sum gives exactly θ ← ∇f·w_f + ∇g·w_g, φ ← w_f·∇f, η ← w_g·∇g: the per-group updates
of BL-JUST's Algorithm 1, with a single DDP gradient synchronisation per step.
"""
from dataclasses import dataclass

LOWER, JOINT, UPPER = "lower", "joint", "upper"
PHASES = (LOWER, JOINT, UPPER)
# optimizer index (ESPnet: optim -> 0, optim2 -> 1)
UPPER_OPTIM, LOWER_OPTIM = 0, 1


@dataclass(frozen=True)
class StepSpec:
    phase: str
    sup_weight: float = 0.0
    ssl_weight: float = 0.0
    gamma: float = 0.0
    lr_scale: float = 1.0

    def __post_init__(self):
        if self.phase not in PHASES:
            raise ValueError(f"unknown phase {self.phase!r}")

    @property
    def draws_labeled(self) -> bool:
        return self.phase in (JOINT, UPPER)

    @property
    def draws_unlabeled(self) -> bool:
        return self.phase in (LOWER, JOINT)

    @property
    def optim_idx(self) -> int:
        return LOWER_OPTIM if self.phase == LOWER else UPPER_OPTIM


def lower_step(weight: float = 1.0) -> StepSpec:
    return StepSpec(LOWER, sup_weight=0.0, ssl_weight=weight)


def upper_step(lr_scale: float = 1.0) -> StepSpec:
    return StepSpec(UPPER, sup_weight=1.0, ssl_weight=0.0, lr_scale=lr_scale)


def joint_step(gamma: float, loss_scaling: bool = False) -> StepSpec:
    # PBGD's min(1, 1/γ) rescaling keeps the effective step ≈ α/γ once γ > 1 (α ≤ 1/L_γ).
    scale = min(1.0, 1.0 / gamma) if (loss_scaling and gamma > 0) else 1.0
    return StepSpec(JOINT, sup_weight=scale, ssl_weight=scale * gamma, gamma=gamma)
