from collections import Counter

import pytest

from espnet_bilevel.solvers.bilevel_solvers import (
    SOLVERS,
    AlternatingSolver,
    BLJUSTSolver,
    PretrainSolver,
    SupervisedSolver,
    WeightedSumSolver,
)
from espnet_bilevel.solvers.step_plan import JOINT, LOWER, UPPER


def phases(solver, epoch):
    return [s.phase for s in solver.plan_epoch(epoch)]


def test_bljust_counts_and_order_per_epoch():
    s = BLJUSTSolver(n_explore=3, n_joint=5, finetune_epochs=2, finetune_steps_per_epoch=4)
    s.configure(max_epoch=6, n_labeled=10, n_unlabeled=20)
    for epoch in (1, 2, 3, 4):  # bilevel epochs: N1 lower steps, then N2 joint steps
        assert phases(s, epoch) == [LOWER] * 3 + [JOINT] * 5
    for epoch in (5, 6):  # fine-tuning epochs: N3 upper steps
        assert phases(s, epoch) == [UPPER] * 4
    total = Counter(p for e in range(1, 7) for p in phases(s, e))
    assert total == {LOWER: 4 * 3, JOINT: 4 * 5, UPPER: 2 * 4}


def test_bljust_defaults_are_one_pass_per_stream():
    s = BLJUSTSolver(finetune_epochs=1)
    s.configure(max_epoch=3, n_labeled=7, n_unlabeled=11)
    assert Counter(phases(s, 1)) == {LOWER: 11, JOINT: 7}
    assert Counter(phases(s, 3)) == {UPPER: 7}


def test_bljust_plan_in_passes_follows_the_size_of_each_stream():
    s = BLJUSTSolver(n_explore_passes=0.5, n_joint_passes=5, finetune_epochs=0)
    # the embedded recipe's plan: 38 unlabeled / 4 labeled batches -> 19 exploration + 20 joint steps
    s.configure(max_epoch=1, n_labeled=4, n_unlabeled=38)
    assert Counter(phases(s, 1)) == {LOWER: 19, JOINT: 20} and s.draws_per_epoch(1) == (20, 39)
    # more labeled batches: more joint steps; the exploration follows the unlabeled set only
    s.configure(max_epoch=1, n_labeled=7, n_unlabeled=38)
    assert Counter(phases(s, 1)) == {LOWER: 19, JOINT: 35}
    # a fraction of a pass over a tiny set still makes one step; 0 exploration passes make none
    s = BLJUSTSolver(n_explore_passes=0, n_joint_passes=0.1, finetune_epochs=0)
    s.configure(max_epoch=1, n_labeled=2, n_unlabeled=5)
    assert Counter(phases(s, 1)) == {JOINT: 1}


def test_bljust_explore_from_epoch_skips_exploration_before_it():
    s = BLJUSTSolver(n_explore=3, n_joint=2, explore_from_epoch=3, finetune_epochs=1)
    s.configure(max_epoch=5, n_labeled=2, n_unlabeled=6)
    assert [phases(s, e) for e in (1, 2)] == [[JOINT] * 2] * 2
    assert [phases(s, e) for e in (3, 4)] == [[LOWER] * 3 + [JOINT] * 2] * 2
    assert phases(s, 5) == [UPPER] * 2
    # the data drawn follows the plan (the trainer sizes its iterators from it)
    assert [s.draws_per_epoch(e) for e in (1, 3)] == [(2, 2), (2, 5)]
    # gamma counts epochs from the first bilevel epoch, not from the first exploration
    assert s.gamma(1, 0) == 0.0 and s.gamma(3, 0) > 0.0


def test_bljust_explore_from_epoch_must_fall_in_the_bilevel_epochs():
    s = BLJUSTSolver(explore_from_epoch=4, finetune_epochs=2)
    with pytest.raises(ValueError, match="explore_from_epoch \\(4\\) is after the last bilevel epoch \\(3"):
        s.configure(max_epoch=5, n_labeled=1, n_unlabeled=1)
    # without exploration the start epoch does not matter
    s = BLJUSTSolver(n_explore_passes=0, explore_from_epoch=9, finetune_epochs=0)
    s.configure(max_epoch=2, n_labeled=1, n_unlabeled=1)
    assert phases(s, 1) == [JOINT]


def test_bljust_gamma_follows_epoch_linear_schedule_exactly():
    s = BLJUSTSolver(n_explore=1, n_joint=2, finetune_epochs=1,
                     penalty_schedule_conf={"gamma_max": 3.0})
    s.configure(max_epoch=4, n_labeled=2, n_unlabeled=2)  # K = 3 bilevel epochs
    got = {e: [st.gamma for st in s.plan_epoch(e) if st.phase == JOINT] for e in (1, 2, 3)}
    assert got == {1: [0.0, 0.0], 2: [1.0, 1.0], 3: [2.0, 2.0]}
    for e in (1, 2, 3):
        for st in s.plan_epoch(e):
            if st.phase == JOINT:
                assert st.sup_weight == 1.0 and st.ssl_weight == st.gamma
            else:
                assert (st.sup_weight, st.ssl_weight) == (0.0, 1.0)


def test_bljust_step_linear_counts_joint_steps_across_epochs():
    s = BLJUSTSolver(n_explore=0, n_joint=3, finetune_epochs=0, penalty_schedule="step_linear",
                     penalty_schedule_conf={"gamma_init": 0.0, "gamma_max": 1.0, "ramp_steps": 4})
    s.configure(max_epoch=3, n_labeled=3, n_unlabeled=3)
    gammas = [st.gamma for e in (1, 2, 3) for st in s.plan_epoch(e)]
    assert gammas == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_bljust_loss_scaling_min_one_over_gamma():
    s = BLJUSTSolver(n_explore=0, n_joint=1, finetune_epochs=0, penalty_schedule="constant",
                     penalty_schedule_conf={"gamma": 4.0}, loss_scaling=True)
    s.configure(max_epoch=1, n_labeled=1, n_unlabeled=1)
    (st,) = list(s.plan_epoch(1))
    assert (st.sup_weight, st.ssl_weight, st.gamma) == (0.25, 1.0, 4.0)


def test_bljust_finetune_lr_scale_only_in_finetune_epochs():
    s = BLJUSTSolver(n_explore=1, n_joint=1, finetune_epochs=1, finetune_lr_scale=0.1)
    s.configure(max_epoch=2, n_labeled=1, n_unlabeled=1)
    assert {st.lr_scale for st in s.plan_epoch(1)} == {1.0}
    assert {st.lr_scale for st in s.plan_epoch(2)} == {0.1}


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"n_joint": 0}, "n_joint = 0"),
        ({"n_explore": -1}, "n_explore must be a non-negative integer"),
        ({"finetune_lr_scale": 0}, "finetune_lr_scale must be > 0"),
        ({"penalty_schedule_conf": {"gamma_max": -1}}, "gamma_max must be >= 0"),
        ({"penalty_schedule": "nope"}, "unknown penalty_schedule"),
        ({"n_joint": 4, "n_joint_passes": 2}, "give n_joint \\(steps\\) or n_joint_passes"),
        ({"n_explore": 4, "n_explore_passes": 0.5}, "give n_explore \\(steps\\) or n_explore_passes"),
        ({"n_joint_passes": 0}, "n_joint_passes must be a number > 0"),
        ({"n_explore_passes": -0.5}, "n_explore_passes must be a number >= 0"),
        ({"n_joint_passes": "5"}, "n_joint_passes must be a number > 0"),
        ({"explore_from_epoch": 0}, "explore_from_epoch must be an integer >= 1"),
        ({"explore_from_epoch": 2.5}, "explore_from_epoch must be an integer >= 1"),
    ],
)
def test_bljust_bad_options(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        BLJUSTSolver(**kwargs)


def test_bljust_needs_a_bilevel_epoch():
    s = BLJUSTSolver(finetune_epochs=3)
    with pytest.raises(ValueError, match="must be smaller than max_epoch"):
        s.configure(max_epoch=3, n_labeled=1, n_unlabeled=1)


def test_baseline_solvers_plans():
    sup, pre = SupervisedSolver(), PretrainSolver()
    ws, alt = WeightedSumSolver(ssl_weight=0.3), AlternatingSolver()
    for s in (sup, pre, ws, alt):
        s.configure(max_epoch=2, n_labeled=3, n_unlabeled=5)
    assert phases(sup, 1) == [UPPER] * 3
    assert phases(pre, 1) == [LOWER] * 5
    assert [(st.phase, st.ssl_weight) for st in ws.plan_epoch(2)] == [(JOINT, 0.3)] * 3
    assert phases(alt, 1) == [LOWER, UPPER] * 3
    # weights: supervised steps never touch g, SSL steps never touch f
    assert all(st.ssl_weight == 0 for st in sup.plan_epoch(1))
    assert all(st.sup_weight == 0 for st in pre.plan_epoch(1))


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_draws_per_epoch_agree_with_plan(name):
    s = SOLVERS[name]()
    s.configure(max_epoch=3, n_labeled=4, n_unlabeled=6)
    for epoch in (1, 2, 3):
        plan = list(s.plan_epoch(epoch))
        lab = sum(st.draws_labeled for st in plan)
        unlab = sum(st.draws_unlabeled for st in plan)
        assert s.draws_per_epoch(epoch) == (lab, unlab)
        assert s.steps_in_epoch(epoch) == len(plan)


def test_optimizer_index_per_phase():
    s = AlternatingSolver(steps_per_epoch=1)
    s.configure(max_epoch=1, n_labeled=1, n_unlabeled=1)
    lower, upper = list(s.plan_epoch(1))
    assert (lower.optim_idx, upper.optim_idx) == (1, 0)


def test_is_joint_solver_means_both_levels():
    from espnet_bilevel.solvers import is_joint_solver

    assert [n for n in sorted(SOLVERS) if is_joint_solver(n)] == ["alternating", "bljust", "weighted_sum"]
    assert not is_joint_solver("pretrain") and not is_joint_solver("nope") and not is_joint_solver(None)
