"""JoinLabels: a rollout's predictions joined to labels by element id, each pair counted once."""

from __future__ import annotations

import apache_beam as beam
import numpy
import pytest
from apache_beam.testing.util import assert_that, equal_to

from liveinference.rollout.labels import JoinLabels
from liveinference.rollout.roles import CanaryPrediction, StablePrediction


def _row(index):
    return numpy.array([float(index), 0.0])


def _counts(item):
    model_id, (role, stats, _) = item
    return model_id, role, stats.labelled, stats.correct


def test_labels_give_each_role_its_labelled_and_correct_counts_once():
    # The canary is right once of two, the stable model twice of three; id 5 has no label,
    # label 9 no prediction. The sliding windows overlap: a pair is still counted once.
    predictions = [
        CanaryPrediction(_row(0), 1, "v2"), CanaryPrediction(_row(1), 1, "v2"),
        StablePrediction(_row(2), 0, "v1"), StablePrediction(_row(3), 0, "v1"),
        StablePrediction(_row(4), 1, "v1"), StablePrediction(_row(5), 0, "v1"),
    ]
    labels = [(0, 1), (1, 0), (2, 0), (3, 1), (4, 1), (9, 0)]
    with beam.Pipeline() as p:
        results = p | "Predictions" >> beam.Create(predictions)
        late = p | "Labels" >> beam.Create(labels)
        joined = results | JoinLabels(late, lambda example: int(example[0]), 10)
        assert_that(
            joined | beam.Map(_counts),
            equal_to([("v2", "canary", 2, 1), ("v2", "stable", 3, 2)]),
        )


def test_a_window_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match="window_seconds must be positive"):
        JoinLabels(None, int, 0)
