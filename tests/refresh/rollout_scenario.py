"""The shared-decision rollout that the streaming rollout tests run on each runner.

A first model serves; a `Broken` candidate (loads fine, fails every prediction) is rolled back
by the one decision the combine of every worker's statistics makes; a good one is promoted.
"""

from __future__ import annotations

from typing import Any, Dict

import apache_beam as beam
from liveinference import RunInference
from liveinference.rollout.policy import RolloutGates

from streams import stream


class Broken:
    """A model that loads fine and fails on every prediction."""

    def predict(self, examples):
        raise ValueError("this model is broken")


def shared_decision_rollout(
    pipeline: beam.Pipeline, handler: Any, pattern: str, rows: int
) -> Dict[str, beam.PCollection]:
    """Streams `rows` rows through RunInference watching `pattern`, with a rollout of half the
    elements decided for all workers every two batches' statistics; returns the results, the
    failed inferences and the failed model loads by name."""
    stream_rows, _ = stream(pipeline, rows=rows)
    results, dlq = stream_rows | RunInference(
        handler, watch_model_pattern=pattern, interval=0.1
    ).with_rollout(
        0.5, gates=RolloutGates(min_predictions=12), decide_every=2
    ).with_exception_handling()
    return {"results": results, "inferences": dlq.failed_inferences, "loads": dlq.failed_model_loads}
