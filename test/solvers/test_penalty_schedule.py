import pytest

from espnet_bilevel.solvers.penalty_schedule import (
    ConstantPenalty,
    EpochLinearPenalty,
    StepLinearPenalty,
    build_penalty_schedule,
)


def test_epoch_linear_matches_algorithm_1():
    # gamma_k = (k-1) * gamma_max / K, K = 4, gamma_max = 2
    s = EpochLinearPenalty(gamma_max=2.0, num_epochs=4)
    assert [s.value(k, 0) for k in (1, 2, 3, 4)] == [0.0, 0.5, 1.0, 1.5]
    # constant within an epoch, clamped after K
    assert s.value(3, 999) == 1.0
    assert s.value(7, 0) == 1.5


def test_step_linear_ramps_then_holds():
    s = StepLinearPenalty(gamma_init=1.0, gamma_max=3.0, ramp_steps=4)
    assert [s.value(1, t) for t in range(7)] == [1.0, 1.5, 2.0, 2.5, 3.0, 3.0, 3.0]
    assert StepLinearPenalty(gamma_init=0.0, gamma_max=5.0, ramp_steps=0).value(1, 0) == 5.0


def test_constant():
    assert ConstantPenalty(gamma=0.7).value(5, 123) == 0.7


@pytest.mark.parametrize(
    "name, conf, msg",
    [
        ("constant", {"gamma": -1.0}, "gamma must be >= 0"),
        ("epoch_linear", {"gamma_max": -0.1}, "gamma_max must be >= 0"),
        ("step_linear", {"gamma_init": 2.0, "gamma_max": 1.0}, "must be >= gamma_init"),
        ("step_linear", {"ramp_steps": -3}, "ramp_steps must be >= 0"),
        ("cosine", {}, "unknown penalty_schedule 'cosine'"),
        ("constant", {"gama": 1.0}, "bad penalty_schedule_conf"),
    ],
)
def test_bad_schedule_config_is_one_clear_error(name, conf, msg):
    with pytest.raises(ValueError, match=msg):
        build_penalty_schedule(name, conf)


def test_epoch_linear_needs_num_epochs():
    with pytest.raises(RuntimeError, match="num_epochs is unset"):
        EpochLinearPenalty(gamma_max=1.0).value(1, 0)


def test_non_mapping_conf_names_the_command_line_form():
    # what `--solver_conf penalty_schedule_conf=gamma_max=10` produces: a string, not a dict
    with pytest.raises(ValueError, match=r"penalty_schedule_conf must be a mapping, got str 'gamma_max=10'.*gamma_max"):
        build_penalty_schedule("epoch_linear", "gamma_max=10")
