"""Label accuracy during a rollout: predictions joined to labels by element id, per window.

Labels arrive later than predictions, on a PCollection of `(element_id, label)`.
`JoinLabels` keys each prediction made during a rollout by `element_id(example)`, joins
both in fixed windows (a Beam CoGroupByKey), and emits, per window and per candidate
whose predictions met labels there, the `(role, RoleStats(labelled, correct), inf)` items
of the candidate and of the stable model: the statistics items the shared decision sums
(`rollout.consensus`), so the policy's `max_accuracy_drop` gate compares both accuracies.
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from typing import Any, Callable, Iterator, List, Tuple

import apache_beam as beam
from apache_beam.transforms.window import FixedWindows

from liveinference.contract import is_prediction
from liveinference.rollout.roles import STABLE, role_of
from liveinference.rollout.stats import RoleStats

__all__ = ["JoinLabels"]

Scored = Tuple[Tuple[str, str], int]


def _scored(
    joined: Tuple[Any, Any], correct: Callable[[Any, Any], bool]
) -> Iterator[Scored]:
    """((role, model_id), 1 if right else 0) for each prediction of an id that has a label."""
    _, grouped = joined
    labels = list(grouped["labels"])
    if not labels:
        return
    for prediction in grouped["predictions"]:
        right = bool(correct(prediction.inference, labels[0]))
        yield (role_of(prediction), prediction.model_id), int(right)


def _per_candidate(scored: List[Scored]) -> Iterator[Tuple[str, Tuple[str, RoleStats, float]]]:
    """Each candidate's and the stable model's labelled and correct counts of one window."""
    labelled: Counter = Counter()
    right: Counter = Counter()
    for (role, model_id), score in scored:
        labelled[(role, model_id)] += 1
        right[(role, model_id)] += score
    stable = [key for key in labelled if key[0] == STABLE]
    for role, model_id in [key for key in labelled if key[0] != STABLE]:
        for key in [(role, model_id), *stable]:
            stats = RoleStats(labelled=labelled[key], correct=right[key])
            yield model_id, (key[0], stats, math.inf)


class JoinLabels(beam.PTransform):
    """Joins a rollout's predictions to their labels and emits label statistics.

    Args:
        labels: A PCollection of `(element_id, label)`.
        element_id: `element_id(example) -> id`, the id a prediction's example is known by.
        window_seconds: The fixed windows the join happens in: a label joins the
            predictions of its id whose timestamps fall in its window.
        correct: `correct(inference, label) -> bool`; defaults to equality.

    Returns:
        From `expand(predictions)`: `(candidate model_id, (role, RoleStats, inf))` items.
    """

    def __init__(
        self,
        labels: beam.PCollection,
        element_id: Callable[[Any], Any],
        window_seconds: float,
        correct: Callable[[Any, Any], bool] = operator.eq,
    ) -> None:
        super().__init__()
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds!r}")
        self._labels = labels
        self._element_id = element_id
        self._window = window_seconds
        self._correct = correct

    def expand(self, predictions: beam.PCollection) -> beam.PCollection:
        element_id = self._element_id
        keyed = (
            predictions
            | "RolloutPredictions" >> beam.Filter(is_prediction)
            | "ById" >> beam.Map(lambda result: (element_id(result.example), result))
            | "PredictionWindows" >> beam.WindowInto(FixedWindows(self._window))
        )
        labels = self._labels | "LabelWindows" >> beam.WindowInto(FixedWindows(self._window))
        return (
            {"predictions": keyed, "labels": labels}
            | "Join" >> beam.CoGroupByKey()
            | "Score" >> beam.FlatMap(_scored, self._correct)
            | "PerWindow" >> beam.combiners.ToList().without_defaults()
            | "PerCandidate" >> beam.FlatMap(_per_candidate)
        )
