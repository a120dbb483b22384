"""Solvers (how each step combines the two levels) and their penalty schedules."""
from espnet_bilevel.solvers.bilevel_solvers import SOLVERS, AbsSolver, is_joint_solver  # noqa: F401
from espnet_bilevel.solvers.step_plan import StepSpec  # noqa: F401
