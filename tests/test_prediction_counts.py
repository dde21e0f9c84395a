"""Every input ends up in the output or in a dead-letter output, whatever a handler returns.

A handler pairs examples with predictions in order, as far as both go, as Beam does. With
exception handling, the examples left without a prediction are dead letters at stage
"inference" naming both counts and the model; without it they are dropped as in Beam, with
one warning per step. Surplus predictions are emitted with a warning.
"""

from __future__ import annotations

import logging

import apache_beam as beam
import numpy

from liveinference import ModelHandler, PredictionResult, RunInference
from liveinference import sklearn_inference as our_sklearn


def first_only(model, batch, inference_args=None):
    """A custom inference function that predicts the first example of each batch only."""
    return model.predict(numpy.stack(batch[:1]))


def _sklearn(path):
    return our_sklearn.SklearnModelHandlerNumpy(
        path, inference_fn=first_only, min_batch_size=3, max_batch_size=3
    )


class Twice(ModelHandler):
    """Answers every example twice."""

    def load_model(self):
        return "twice"

    def run_inference(self, batch, model, inference_args=None):
        return [PredictionResult(example, example * 2) for example in batch for _ in (1, 2)]

    def batch_elements_kwargs(self):
        return {"min_batch_size": 3, "max_batch_size": 3}


def _count_warnings(caplog):
    return [r for r in caplog.records if "predictions for" in r.getMessage() and r.levelno == logging.WARNING]


def test_examples_left_without_a_prediction_are_dead_letters(run_pipeline, sklearn_model_path, dataset):
    inputs = list(dataset[0][:6])

    def build(p):
        results, dlq = (
            p | beam.Create(inputs, reshuffle=False)
            | RunInference(_sklearn(sklearn_model_path)).with_exception_handling()
        )
        return {"results": results, "dead": dlq.failed_inferences}

    out = run_pipeline(build)
    assert len(out["results"]) == 2  # batches of 3, one prediction each
    assert len(out["results"]) + len(out["dead"]) == len(inputs)
    assert {(r.stage, r.model_id, r.exception_type) for r in out["dead"]} == {
        ("inference", sklearn_model_path, "liveinference.errors.PredictionCountError")
    }
    assert all("returned 1 predictions for 3 examples" in r.message for r in out["dead"])
    assert all(sklearn_model_path in r.message for r in out["dead"])
    answered = {tuple(r.example) for r in out["results"]}
    dead = {tuple(r.element) for r in out["dead"]}
    assert answered | dead == {tuple(x) for x in inputs} and not answered & dead


def test_without_exception_handling_the_drop_is_logged_once(run_pipeline, sklearn_model_path, dataset, caplog):
    inputs = list(dataset[0][:6])
    with caplog.at_level(logging.WARNING, logger="liveinference.dofn"):
        out = run_pipeline(
            lambda p: {"results": p | beam.Create(inputs, reshuffle=False) | RunInference(_sklearn(sklearn_model_path))}
        )
    assert len(out["results"]) == 2  # as Beam: no exception, the pairs that exist
    warnings = _count_warnings(caplog)
    assert len(warnings) == 1, [w.getMessage() for w in warnings]
    assert "returned 1 predictions for 3 examples" in warnings[0].getMessage()
    assert sklearn_model_path in warnings[0].getMessage()


def test_surplus_predictions_are_emitted_with_a_warning(run_pipeline, caplog):
    inputs = [1, 2, 3]
    def build(p):
        results, _ = p | beam.Create(inputs, reshuffle=False) | RunInference(Twice()).with_exception_handling()
        return {"results": results}

    with caplog.at_level(logging.WARNING, logger="liveinference.dofn"):
        out = run_pipeline(build)
    assert sorted(r.inference for r in out["results"]) == [2, 2, 4, 4, 6, 6]
    warnings = _count_warnings(caplog)
    assert len(warnings) == 1 and "returned 6 predictions for 3 examples" in warnings[0].getMessage()
