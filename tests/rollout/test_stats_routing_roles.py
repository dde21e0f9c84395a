"""Rollout statistics combine exactly, routing is stable and sticky, roles survive Beam."""

from __future__ import annotations

import apache_beam as beam
import numpy
import pytest
from apache_beam.coders import coders

from liveinference import PredictionResult
from liveinference.rollout.roles import CANARY, SHADOW, STABLE, role_of, with_role
from liveinference.rollout.routing import Router
from liveinference.rollout.stats import RoleStats


def test_stats_combine_in_any_order_to_the_same_numbers():
    parts = [RoleStats.of_batch(10, 1, 2.0), RoleStats.of_batch(5, 0, 40.0), RoleStats(compared=4, agreed=3)]
    forward, backward = RoleStats(), RoleStats()
    for part in parts:
        forward = forward.merged(part)
    for part in reversed(parts):
        backward = backward.merged(part)
    assert forward == backward
    assert (forward.predictions, forward.errors, forward.agreement) == (15, 1, 0.75)
    assert forward.latency_ms(0.5) == pytest.approx(2.0, rel=0.13)
    assert forward.latency_ms(0.99) == pytest.approx(40.0, rel=0.13)
    assert RoleStats().latency_ms(0.99) is None and RoleStats().error_rate == 0


def test_routing_serves_about_the_share_and_is_the_same_for_the_same_seed():
    elements = [numpy.array([i, i + 1.0]) for i in range(4000)]
    router = Router(0.1, seed=7)
    stable, canary = router.split(elements)
    assert 300 < len(canary) < 500 and len(stable) + len(canary) == 4000
    assert Router(0.1, seed=7).split(elements) == (stable, canary)
    assert Router(0.1, seed=8).split(elements) != (stable, canary)


def test_keyed_elements_are_sticky_per_key():
    router = Router(0.5, seed=1)
    roles = {}
    for value in range(200):
        for key in ("a", "b", "c", "d", "e", "f"):
            roles.setdefault(key, set()).add(router.is_canary((key, value)))
    assert all(len(seen) == 1 for seen in roles.values())
    assert {True, False} == {seen.pop() for seen in roles.values()}


def test_a_share_out_of_range_is_refused():
    with pytest.raises(ValueError, match="canary_share"):
        Router(0)
    with pytest.raises(ValueError, match="canary_share"):
        Router(1.5)


def test_roles_are_beam_predictions_and_survive_beams_coder():
    plain = [PredictionResult(1, 2, "m1"), ("k", PredictionResult(3, 4, "m1"))]
    assert [role_of(r) for r in plain] == [STABLE, STABLE]
    canary = with_role(plain, CANARY)
    assert [role_of(r) for r in canary] == [CANARY, CANARY]
    example, inference, model_id = canary[0]
    assert (example, inference, model_id) == (1, 2, "m1") and isinstance(canary[0], PredictionResult)
    coder = coders.FastPrimitivesCoder()
    decoded = coder.decode(coder.encode(with_role(plain, SHADOW)[1]))
    assert role_of(decoded) == SHADOW and decoded[1].model_id == "m1"


def test_roles_survive_a_pipeline_shuffle(run_pipeline):
    out = run_pipeline(
        lambda p: {"out": p | beam.Create([1, 2]) | beam.Map(lambda x: with_role([PredictionResult(x, x, "m")], CANARY)[0])
                   | beam.Reshuffle()}
    )
    assert {role_of(r) for r in out["out"]} == {CANARY}
