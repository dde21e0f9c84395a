"""JoinLabels: a rollout's predictions joined to late labels by element id, per window."""

from __future__ import annotations

import apache_beam as beam
import numpy
import pytest
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from liveinference.rollout.labels import JoinLabels
from liveinference.rollout.roles import CanaryPrediction, StablePrediction


def _row(index):
    return numpy.array([float(index), 0.0])


def _counts(item):
    model_id, (role, stats, _) = item
    return model_id, role, stats.labelled, stats.correct


def test_labels_give_each_role_its_labelled_and_correct_counts_per_window():
    # ids 0-5 in window [0, 10), ids 10-11 in [10, 20); the canary is right once in
    # window one, the stable model twice of three; label 11 arrives in the wrong window.
    predictions = [
        (CanaryPrediction(_row(0), 1, "v2"), 1), (CanaryPrediction(_row(1), 1, "v2"), 2),
        (StablePrediction(_row(2), 0, "v1"), 3), (StablePrediction(_row(3), 0, "v1"), 4),
        (StablePrediction(_row(4), 1, "v1"), 5), (StablePrediction(_row(5), 0, "v1"), 6),
        (CanaryPrediction(_row(10), 0, "v2"), 11), (StablePrediction(_row(11), 0, "v1"), 12),
    ]
    labels = [(0, 1, 7), (1, 0, 7), (2, 0, 8), (3, 1, 8), (4, 1, 8), (10, 0, 15), (11, 0, 25)]
    with beam.Pipeline() as p:
        results = p | "Predictions" >> beam.Create(predictions) | "PTime" >> beam.Map(
            lambda pair: TimestampedValue(*pair)
        )
        late = p | "Labels" >> beam.Create(labels) | "LTime" >> beam.Map(
            lambda t: TimestampedValue((t[0], t[1]), t[2])
        )
        joined = results | JoinLabels(late, lambda example: int(example[0]), 10)
        assert_that(
            joined | beam.Map(_counts),
            equal_to([("v2", "canary", 2, 1), ("v2", "stable", 3, 2), ("v2", "canary", 1, 1)]),
        )


def test_a_window_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match="window_seconds must be positive"):
        JoinLabels(None, int, 0)
