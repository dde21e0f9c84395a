"""Label accuracy during a rollout: predictions joined to labels that arrive later, by id.

Labels arrive later than predictions, on a PCollection of `(element_id, label)`. Predictions
lose their input's event time on the way through RunInference (Beam's BatchElements stamps
a batch at the end of its window), so `JoinLabels` joins on arrival: a label joins the
prediction of its id when it arrives at most `window_seconds` after it or before it (the
label horizon; one up to twice that apart may join too, later ones are dropped). Both are
stamped with the time they reach the join and grouped in sliding windows of twice the
horizon, one horizon apart (a Beam CoGroupByKey); a pair is scored only in the window whose
first half holds the earlier of the two, so each (prediction, label) pair is counted once.
Per window and per candidate whose predictions met labels there, it emits the
`(role, RoleStats(labelled, correct), inf)` items of the candidate and of the stable model:
the statistics items the shared decision sums (`rollout.consensus`), so the policy's
`max_accuracy_drop` gate compares both accuracies.

The join runs on arrival time, so it fires as the stream's watermark passes: meant for live
streams, whose event time follows the clock.
"""

from __future__ import annotations

import math
import operator
import time
from collections import Counter
from typing import Any, Callable, Iterator, List, Tuple

import apache_beam as beam
from apache_beam.transforms.window import SlidingWindows, TimestampedValue

from liveinference.contract import is_prediction
from liveinference.rollout.roles import STABLE, role_of
from liveinference.rollout.stats import RoleStats

__all__ = ["JoinLabels"]

Scored = Tuple[Tuple[str, str], int]


def _arrived(key: Any, value: Any) -> TimestampedValue:
    """`(key, (arrival time, value))` stamped with the time it reached the join."""
    now = time.time()
    return TimestampedValue((key, (now, value)), now)


class _Score(beam.DoFn):
    """((role, model_id), 1 if right else 0) for each prediction of an id that has a label,
    scored only in the window whose first half holds the earlier of the two."""

    def __init__(self, horizon: float, correct: Callable[[Any, Any], bool]) -> None:
        self._horizon = horizon
        self._correct = correct

    def process(
        self, joined: Tuple[Any, Any], window: Any = beam.DoFn.WindowParam
    ) -> Iterator[Scored]:
        _, grouped = joined
        labels = sorted(grouped["labels"], key=operator.itemgetter(0))
        if not labels:
            return
        label_arrived, label = labels[0]
        first_half_ends = float(window.start) + self._horizon
        for arrived, prediction in grouped["predictions"]:
            if min(arrived, label_arrived) < first_half_ends:
                right = bool(self._correct(prediction.inference, label))
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

    Give it to `RunInference(...).with_rollout(labels=...)`, which applies it to the step's
    predictions (before postprocessing; `(key, prediction)` results are not joined).

    Args:
        labels: A PCollection of `(element_id, label)`.
        element_id: `element_id(example) -> id`, the id a prediction's example is known by.
        window_seconds: The label horizon: a label joins its prediction when it arrives at
            most this long after it or before it (up to twice that apart, it may); its
            statistics reach the decision about twice this long after the prediction.
        correct: `correct(inference, label) -> bool`; defaults to equality.

    Returns:
        From `expand(predictions)`: `(candidate model_id, (role, RoleStats, inf))` items.

    Raises:
        ValueError: if `window_seconds` is not positive.
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
        windows = SlidingWindows(2 * self._window, self._window)
        keyed = (
            predictions
            | "RolloutPredictions" >> beam.Filter(is_prediction)
            | "PredictionArrival" >> beam.Map(
                lambda result, element_id: _arrived(element_id(result.example), result),
                self._element_id,
            )
            | "PredictionWindows" >> beam.WindowInto(windows)
        )
        labels = (
            self._labels
            | "LabelArrival" >> beam.MapTuple(_arrived)
            | "LabelWindows" >> beam.WindowInto(windows)
        )
        return (
            {"predictions": keyed, "labels": labels}
            | "Join" >> beam.CoGroupByKey()
            | "Score" >> beam.ParDo(_Score(self._window, self._correct))
            | "PerWindow" >> beam.combiners.ToList().without_defaults()
            | "PerCandidate" >> beam.FlatMap(_per_candidate)
        )
