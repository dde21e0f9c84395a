"""One rollout decision for all workers: a Beam combine over every worker's statistics.

Each worker emits the statistics of every batch it served during a rollout, keyed by the
candidate's model_id; with labels, the label counts of each window (`rollout.labels`) join
them. `DecideRollout` sums them in the global window, firing after every
`decide_every` batches' statistics with the totals accumulated since the candidate was
staged (a data-driven trigger: no state API, no processing-time timers, so it runs on the
local runner and on Prism alike), runs the policy on the totals and publishes the decision
to the run's rollout channel, where every worker's refresher reads it
(`RolloutState.follow`): no worker promotes a model another rolled back. A rollback also
leaves a FailureRecord (stage "rollout", the failed gates and the numbers) for
failed_model_loads.

A decision travels as a channel message `ModelMetadata(candidate model_id, action)`: the
channel's own format, in a directory of its own, so no model-version source reads it.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Dict, Iterator, Optional, Set, Tuple

import apache_beam as beam
from apache_beam.transforms.trigger import AccumulationMode, AfterCount, Repeatedly
from apache_beam.transforms.window import GlobalWindows


from liveinference.contract import ModelMetadata
from liveinference.deadletter import FailureRecord
from liveinference.rollout.config import RolloutConfig
from liveinference.rollout.policy import Action, decide
from liveinference.rollout.roles import CANARY, SHADOW, STABLE
from liveinference.rollout.state import ROLLOUT_STAGE, rollback_error
from liveinference.rollout.stats import RoleStats

__all__ = ["DecideRollout", "rollout_outputs", "rollout_tags"]

SHADOW_TAG = "shadow"
STATS_TAG = "rollout_stats"

Totals = Tuple[float, Dict[str, RoleStats]]


class _MergeRoles(beam.CombineFn):
    """Sums `(role, RoleStats, staged_at)` into (earliest staged_at, {role: RoleStats})."""

    def create_accumulator(self) -> Totals:
        return (math.inf, {})

    def add_input(self, totals: Totals, item: Tuple[str, RoleStats, float]) -> Totals:
        role, stats, staged_at = item
        since, by_role = totals
        by_role[role] = by_role.get(role, RoleStats()).merged(stats)
        return (min(since, staged_at), by_role)

    def merge_accumulators(self, accumulators: Any) -> Totals:
        since, merged = math.inf, {}  # type: float, Dict[str, RoleStats]
        for other_since, by_role in accumulators:
            since = min(since, other_since)
            for role, stats in by_role.items():
                merged[role] = merged.get(role, RoleStats()).merged(stats)
        return (since, merged)

    def extract_output(self, totals: Totals) -> Totals:
        return totals


_DECIDED: Set[Tuple[str, str]] = set()  # (channel path, candidate model_id) decided here
_DECIDED_LOCK = threading.Lock()


def _first_decision(channel_path: str, model_id: str) -> bool:
    """True for the first decision on `model_id` in this process; False after."""
    with _DECIDED_LOCK:
        if (channel_path, model_id) in _DECIDED:
            return False
        _DECIDED.add((channel_path, model_id))
        return True


class _Decide(beam.DoFn):
    """Decides on each candidate's running totals; publishes a decision, reports a rollback.

    The totals accumulate across firings, so each firing sees everything since the
    candidate was staged. Firings may reach several instances of this DoFn (Prism runs
    bundles on several); the first decision in a process is final there, and it is
    published and a rollback reported once per process (`_first_decision`).
    """

    def __init__(self, config: RolloutConfig, channel: Any) -> None:
        self._config = config
        self._channel = channel

    def process(self, element: Tuple[str, Totals]) -> Iterator[FailureRecord]:
        model_id, (since, stats) = element
        if (self._channel.path, model_id) in _DECIDED:
            return
        new_role = SHADOW if self._config.shadow else CANARY
        decision = decide(
            stats.get(new_role, RoleStats()),
            stats.get(STABLE, RoleStats()),
            self._config.gates,
            time.time() - since,
        )
        if decision.action is Action.WAIT or not _first_decision(self._channel.path, model_id):
            return
        self._channel.publish(ModelMetadata(model_id, decision.action.value))
        if decision.action is Action.ROLLBACK:
            offer = ModelMetadata(model_id, "")
            error = rollback_error(model_id, decision)
            yield FailureRecord.of(offer, ROLLOUT_STAGE, error, model_id)


class DecideRollout(beam.PTransform):
    """Turns the workers' `(candidate model_id, (role, RoleStats))` into one decision.

    Args:
        config: The step's rollout settings (gates, mode).
        channel: The run's rollout channel (an EventChannel) the decision is published to.
        decide_every: How many batches' statistics arrive between two decisions.

    Returns:
        From `expand`: the FailureRecords of rollbacks.
    """

    def __init__(self, config: RolloutConfig, channel: Any, decide_every: int) -> None:
        super().__init__()
        self._config = config
        self._channel = channel
        self._decide_every = decide_every

    def expand(self, stats: beam.PCollection) -> beam.PCollection:
        return (
            stats
            | "StatsWindows" >> beam.WindowInto(
                GlobalWindows(),
                trigger=Repeatedly(AfterCount(self._decide_every)),
                accumulation_mode=AccumulationMode.ACCUMULATING,
            )
            | "SumStats" >> beam.CombinePerKey(_MergeRoles())
            | "Decide" >> beam.ParDo(_Decide(self._config, self._channel))
        )


def rollout_tags(rollout: Optional[RolloutConfig]) -> Tuple[str, ...]:
    """Returns the extra output tags the inference DoFn emits under `rollout`."""
    if rollout is None:
        return ()
    tags = [SHADOW_TAG] if rollout.shadow else []
    return (*tags, STATS_TAG) if rollout.decides_together else tuple(tags)


def rollout_outputs(
    outputs: Any,
    rollout: Optional[RolloutConfig],
    failed_model_loads: Optional[Any],
    labels: Optional[beam.PTransform] = None,
) -> Tuple[Any, Any]:
    """Wires the inference step's rollout outputs.

    Args:
        outputs: The inference ParDo's tagged outputs.
        rollout: The step's rollout settings, if any.
        failed_model_loads: Its failed_model_loads output, None without exception handling.
        labels: A `JoinLabels` applied to the predictions; its label statistics join the
            workers' statistics in the shared decision.

    Returns:
        failed_model_loads with the shared decision's rollbacks added, and the shadow
        output (None unless in shadow mode).
    """
    if rollout is None:
        return failed_model_loads, None
    shadows = outputs[SHADOW_TAG] if rollout.shadow else None
    if not rollout.decides_together:
        return failed_model_loads, shadows
    stats = outputs[STATS_TAG]
    if labels is not None:
        labelled = outputs.main | "JoinLabels" >> labels
        stats = (
            [stats | "BatchStatsGlobal" >> beam.WindowInto(GlobalWindows()),
             labelled | "LabelStatsGlobal" >> beam.WindowInto(GlobalWindows())]
            | "WithLabelStats" >> beam.Flatten()
        )
    rollbacks = stats | "DecideRollout" >> DecideRollout(
        rollout, rollout.decisions, rollout.decide_every or 1
    )
    if failed_model_loads is None:
        return None, shadows
    loads = (failed_model_loads, rollbacks) | "WithRollbacks" >> beam.Flatten()
    return loads, shadows
