"""The rollout policy: a pure function from statistics and gates to promote/rollback/wait."""

from __future__ import annotations

import pytest

from liveinference.rollout.config import RolloutConfig
from liveinference.rollout.policy import Action, RolloutGates, decide
from liveinference.rollout.stats import RoleStats

GATES = RolloutGates(min_predictions=100, max_error_rate=0.05, max_latency_ms=50)
FAST_STABLE = RoleStats.of_batch(1000, 0, 5.0)


def test_a_canary_within_bounds_is_promoted_after_n_predictions():
    assert decide(RoleStats.of_batch(99, 0, 5.0), FAST_STABLE, GATES, 0).action is Action.WAIT
    assert decide(RoleStats.of_batch(100, 0, 5.0), FAST_STABLE, GATES, 0).action is Action.PROMOTE


def test_a_canary_is_judged_after_max_seconds_on_what_it_answered():
    gates = RolloutGates(min_predictions=100, max_seconds=30)
    few = RoleStats.of_batch(10, 0, 5.0)
    assert decide(few, FAST_STABLE, gates, 29).action is Action.WAIT
    assert decide(few, FAST_STABLE, gates, 30).action is Action.PROMOTE
    assert decide(RoleStats(), FAST_STABLE, gates, 300).action is Action.WAIT, "nothing to judge"


def test_a_slow_canary_is_rolled_back_naming_the_latency():
    decision = decide(RoleStats.of_batch(100, 0, 80.0), FAST_STABLE, GATES, 0)
    assert decision.action is Action.ROLLBACK
    assert "p99 latency" in decision.describe() and "max_latency_ms 50" in decision.describe()


def test_a_canary_slower_than_stable_by_a_ratio_is_rolled_back():
    gates = RolloutGates(min_predictions=10, max_latency_ratio=2)
    assert decide(RoleStats.of_batch(10, 0, 9.0), FAST_STABLE, gates, 0).action is Action.PROMOTE
    decision = decide(RoleStats.of_batch(10, 0, 20.0), FAST_STABLE, gates, 0)
    assert decision.action is Action.ROLLBACK and "2 x stable's" in decision.reasons[0]


def test_errors_past_the_bound_roll_back_before_n_predictions():
    canary = RoleStats.of_batch(20, 4, 5.0)  # 4 errors > 0.05 * 100 is false; 6 is true
    assert decide(canary, FAST_STABLE, GATES, 0).action is Action.WAIT
    canary = canary.merged(RoleStats.of_batch(0, 2, 5.0))
    decision = decide(canary, FAST_STABLE, GATES, 0)
    assert decision.action is Action.ROLLBACK
    assert decision.numbers["canary"]["errors"] == 6


def test_disagreement_and_a_worse_accuracy_roll_back():
    gates = RolloutGates(
        min_predictions=10, min_agreement=0.9, max_accuracy_drop=0.02, min_labelled=10
    )
    agreeing = RoleStats(predictions=10, compared=10, agreed=10, labelled=10, correct=9)
    stable = RoleStats(predictions=10, labelled=10, correct=9)
    assert decide(agreeing, stable, gates, 0).action is Action.PROMOTE
    worse = RoleStats(predictions=10, compared=10, agreed=8, labelled=10, correct=8)
    decision = decide(worse, stable, gates, 0)
    assert decision.action is Action.ROLLBACK and len(decision.reasons) == 2


def test_an_accuracy_gate_waits_for_labels_before_it_promotes():
    gates = RolloutGates(min_predictions=10, max_accuracy_drop=0.05, min_labelled=20)
    stable = RoleStats(predictions=100, labelled=40, correct=36)
    unlabelled = RoleStats(predictions=50)
    assert decide(unlabelled, stable, gates, 0).action is Action.WAIT, "no label yet"
    few = RoleStats(predictions=50, labelled=19, correct=19)
    assert decide(few, stable, gates, 0).action is Action.WAIT, "fewer than min_labelled"
    few_wrong = RoleStats(predictions=50, labelled=5, correct=0)
    assert decide(few_wrong, stable, gates, 0).action is Action.WAIT, "too few to judge"
    enough = RoleStats(predictions=50, labelled=20, correct=18)
    assert decide(enough, stable, gates, 0).action is Action.PROMOTE
    unlabelled_stable = RoleStats(predictions=100, labelled=19, correct=19)
    assert decide(enough, unlabelled_stable, gates, 0).action is Action.WAIT


def test_a_canary_worse_on_labels_is_rolled_back_with_both_accuracies():
    gates = RolloutGates(min_predictions=10, max_accuracy_drop=0.05, min_labelled=20)
    stable = RoleStats(predictions=100, labelled=40, correct=36)
    decision = decide(RoleStats(predictions=50, labelled=20, correct=2), stable, gates, 0)
    assert decision.action is Action.ROLLBACK
    assert "accuracy 0.1000 < stable's 0.9000" in decision.reasons[0]
    assert decision.numbers["canary"]["labelled"] == 20
    assert decision.numbers["stable"]["accuracy"] == 0.9


def test_a_canary_without_enough_labels_after_max_seconds_is_rolled_back():
    gates = RolloutGates(
        min_predictions=10, max_seconds=60, max_accuracy_drop=0.05, min_labelled=20
    )
    stable = RoleStats(predictions=100, labelled=40, correct=36)
    canary = RoleStats(predictions=50, labelled=3, correct=3)
    assert decide(canary, stable, gates, 59).action is Action.WAIT
    decision = decide(canary, stable, gates, 60)
    assert decision.action is Action.ROLLBACK
    assert "only 3 labelled canary predictions" in decision.reasons[0]


@pytest.mark.parametrize(
    "arguments",
    [{"min_predictions": 0}, {"min_labelled": 0}, {"max_error_rate": 1.5}, {"latency_quantile": 0},
     {"max_seconds": float("inf")}, {"min_agreement": -0.1}],
)
def test_gates_out_of_range_are_refused_naming_the_gate(arguments):
    name = next(iter(arguments))
    with pytest.raises((TypeError, ValueError), match=name):
        RolloutGates(**arguments)


@pytest.mark.parametrize(
    "arguments, error",
    [({"labelled": True, "gates": RolloutGates(max_accuracy_drop=0.1)}, "decide_every"),
     ({"labelled": True, "decide_every": 2}, "no gate reads them"),
     ({"gates": RolloutGates(max_accuracy_drop=0.1), "decide_every": 2}, "needs labels")],
)
def test_labels_and_the_accuracy_gate_come_together(arguments, error):
    with pytest.raises(ValueError, match=error):
        RolloutConfig(**arguments)
