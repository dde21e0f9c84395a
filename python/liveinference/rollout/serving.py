"""One batch during a rollout: who serves which element, in which role, and what it cost.

In canary mode the router's share of the batch goes to the candidate and the rest to the
stable model; both parts go to the main output, each prediction typed with its role. In
shadow mode the stable model serves the whole batch (main output) and the candidate
predicts a copy of the router's share; each shadow prediction goes to the shadow output
paired with the stable prediction for the same element, and their agreement is counted.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, List, NamedTuple, Sequence, Tuple

import numpy

from liveinference.contract import is_prediction
from liveinference.rollout.roles import CANARY, SHADOW, STABLE, with_role
from liveinference.rollout.routing import Router
from liveinference.rollout.state import RolloutState
from liveinference.rollout.stats import RoleStats

__all__ = ["RolloutBatch", "ShadowPair", "serve_rollout"]

Failures = List[Tuple[Any, BaseException]]
Serve = Callable[[Any, Sequence[Any]], Tuple[List[Any], Failures]]


class ShadowPair(NamedTuple):
    """A shadow prediction and the stable prediction for the same element.

    Attributes:
        shadow: The candidate's `ShadowPrediction` (or `(key, prediction)`).
        stable: The stable model's `StablePrediction` (or `(key, prediction)`).
    """

    shadow: Any
    stable: Any


@dataclasses.dataclass
class RolloutBatch:
    """What a batch produced during a rollout.

    Attributes:
        results: The main output's predictions, typed with their roles.
        failures: (element, error, model_id) of elements dead-lettered.
        shadow: ShadowPairs for the shadow output.
        stats: (role, RoleStats) of each part served, for a decision shared by all workers.
    """

    results: List[Any]
    failures: List[Tuple[Any, BaseException, str]]
    shadow: List[ShadowPair]
    stats: List[Tuple[str, RoleStats]]


def serve_rollout(
    serve: Serve,
    stable: Any,
    candidate: Any,
    batch: Sequence[Any],
    state: RolloutState,
    router: Router,
) -> RolloutBatch:
    """Serves `batch` with the stable model and the candidate, by the rollout's mode.

    Args:
        serve: `serve(serving_model, elements) -> (stamped results, [(element, error)])`,
            the DoFn's inference with its failure isolation.
        stable: The stable ServingModel.
        candidate: The candidate ServingModel.
        batch: The batch.
        state: The rollout, which receives each part's statistics.
        router: Picks the candidate's elements.

    Returns:
        The batch's outputs.
    """
    stable_at, candidate_at = router.split(batch)
    stats: List[Tuple[str, RoleStats]] = []
    if state.config.shadow:
        results, failures = _timed(serve, stable, list(batch), state, STABLE, stats)
        copies = [batch[i] for i in candidate_at]
        shadow, _ = _timed(serve, candidate, copies, state, SHADOW, stats)
        pairs = _pairs(shadow, results, batch, candidate_at)
        if pairs:
            agreed = sum(_equal(_inference(p.shadow), _inference(p.stable)) for p in pairs)
            compared = RoleStats(compared=len(pairs), agreed=agreed)
            state.add(candidate.model_id, SHADOW, compared)
            stats.append((SHADOW, compared))
        dead = [(element, error, stable.model_id) for element, error in failures]
        return RolloutBatch(with_role(results, STABLE), dead, pairs, stats)
    results, failures = _timed(
        serve, stable, [batch[i] for i in stable_at], state, STABLE, stats
    )
    canary, canary_failures = _timed(
        serve, candidate, [batch[i] for i in candidate_at], state, CANARY, stats
    )
    dead = [(element, error, stable.model_id) for element, error in failures]
    dead += [(element, error, candidate.model_id) for element, error in canary_failures]
    return RolloutBatch(with_role(results, STABLE) + with_role(canary, CANARY), dead, [], stats)


def _timed(
    serve: Serve,
    serving: Any,
    part: List[Any],
    state: RolloutState,
    role: str,
    stats: List[Tuple[str, RoleStats]],
) -> Tuple[List[Any], Failures]:
    if not part:
        return [], []
    started = time.perf_counter()
    results, failures = serve(serving, part)
    latency_ms = (time.perf_counter() - started) * 1000
    part_stats = RoleStats.of_batch(len(results), len(failures), latency_ms)
    state.add(serving.model_id, role, part_stats)
    stats.append((role, part_stats))
    return results, failures


def _pairs(
    shadow: List[Any], stable: List[Any], batch: Sequence[Any], copied_at: List[int]
) -> List[ShadowPair]:
    """Pairs shadow predictions with the stable ones: by position when both answered every
    element they were given, else by the example object each prediction carries."""
    shadow = with_role(shadow, SHADOW)
    stable = with_role(stable, STABLE)
    if len(stable) == len(batch) and len(shadow) == len(copied_at):
        return [ShadowPair(s, stable[i]) for s, i in zip(shadow, copied_at)]
    by_example = {id(_example(result)): result for result in stable}
    return [
        ShadowPair(s, by_example[id(_example(s))]) for s in shadow if id(_example(s)) in by_example
    ]


def _prediction(result: Any) -> Any:
    """The prediction in a result: itself, or the second of a `(key, prediction)` pair."""
    if isinstance(result, tuple) and len(result) == 2 and is_prediction(result[1]):
        return result[1]
    return result


def _example(result: Any) -> Any:
    return getattr(_prediction(result), "example", result)


def _inference(result: Any) -> Any:
    return getattr(_prediction(result), "inference", result)


def _equal(left: Any, right: Any) -> bool:
    try:
        return bool(numpy.array_equal(numpy.asarray(left), numpy.asarray(right)))
    except (TypeError, ValueError):
        return bool(left == right)
