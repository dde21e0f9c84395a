"""Beam 2.77's batching arguments on every framework handler, working on the installed Beam.

The pipelines batch numpy examples of several lengths with a scikit-learn handler whose
inference function answers, for each example, the lengths of the batch it came in: so the
results show the batches RunInference formed.
"""

from __future__ import annotations

import inspect
import math
import pickle

import apache_beam as beam
import numpy
import pytest
from apache_beam.ml.inference import base as beam_base
from apache_beam.ml.inference import sklearn_inference as beam_sklearn

from liveinference import KeyedModelHandler, MaybeKeyedModelHandler, RunInference
from liveinference.batching import HandlerBatching, length_bucket
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy

from beam_arguments import BATCHING_2_77

LENGTHS = (3, 20, 40, 100)      # one example of each, twelve times over
BOUNDARIES = [10, 50]           # buckets: below 10, 10 to 49, 50 and up


def _batch_lengths(model, batch, inference_args=None):
    """Answers, for each example, the lengths of the examples in its batch."""
    lengths = tuple(len(example) for example in batch)
    return [lengths] * len(batch)


def _examples():
    return [numpy.zeros(length) for _ in range(12) for length in LENGTHS]


def _batches(run_pipeline, handler, name: str = "results") -> set:
    """Runs the examples through RunInference; returns the batches formed (as lengths)."""
    out = run_pipeline(
        lambda p: {name: p | beam.Create(_examples()) | RunInference(handler)}
    )[name]
    assert sorted(len(result.example) for result in out) == sorted(map(len, _examples()))
    return {result.inference for result in out}


def _handler(path, **batching):
    return SklearnModelHandlerNumpy(path, inference_fn=_batch_lengths, **batching)


def test_length_buckets_keep_each_batch_to_examples_of_similar_length(
    run_pipeline, sklearn_model_path
):
    bucketed = _batches(run_pipeline, _handler(
        sklearn_model_path, min_batch_size=8, max_batch_size=8,
        batch_length_fn=len, batch_bucket_boundaries=BOUNDARIES,
    ))
    assert all(len({length_bucket(n, BOUNDARIES) for n in batch}) == 1 for batch in bucketed)
    assert {n for batch in bucketed for n in batch} == set(LENGTHS)
    by_count = _batches(run_pipeline, _handler(
        sklearn_model_path, min_batch_size=8, max_batch_size=8
    ), "by_count")
    assert any(len({length_bucket(n, BOUNDARIES) for n in batch}) > 1 for batch in by_count)


def test_length_buckets_default_to_beams_boundaries_and_work_with_a_duration(
    run_pipeline, sklearn_model_path
):
    batches = _batches(run_pipeline, _handler(
        sklearn_model_path, max_batch_size=6, max_batch_duration_secs=1, batch_length_fn=len
    ))
    # Beam's default boundaries [16, 32, 64, ...]: 3, 20 and 40, 100 fall in four buckets.
    assert {frozenset(batch) for batch in batches} == {frozenset({n}) for n in LENGTHS}
    assert all(len(batch) <= 6 for batch in batches)


def test_max_batch_weight_bounds_the_summed_element_sizes(run_pipeline, sklearn_model_path):
    # As in Beam, with element_size_fn BatchElements' batch sizes count weight too.
    batches = _batches(run_pipeline, _handler(
        sklearn_model_path, min_batch_size=200, max_batch_size=200,
        max_batch_weight=64, element_size_fn=len,
    ))
    assert all(sum(batch) <= 64 or len(batch) == 1 for batch in batches)
    assert (100,) in batches, "an example heavier than the limit is a batch of its own"
    assert any(len(batch) > 1 for batch in batches)


def test_handlers_name_the_arguments_as_beams_batch_elements_does(sklearn_model_path):
    arguments = dict(
        min_batch_size=2, max_batch_size=8, max_batch_duration_secs=0.5, max_batch_weight=99,
        element_size_fn=len, batch_length_fn=len, batch_bucket_boundaries=[4, 8],
    )
    ours = SklearnModelHandlerNumpy(sklearn_model_path, **arguments).batch_elements_kwargs()
    assert ours == {
        "min_batch_size": 2, "max_batch_size": 8, "max_batch_duration_secs": 0.5,
        "max_batch_weight": 99, "element_size_fn": len, "length_fn": len,
        "bucket_boundaries": [4, 8],
    }
    beams = inspect.signature(beam_sklearn.SklearnModelHandlerNumpy.__init__).parameters
    if set(BATCHING_2_77) <= set(beams):  # Beam 2.77 or later is installed
        handler = beam_sklearn.SklearnModelHandlerNumpy(sklearn_model_path, **arguments)
        assert ours == dict(handler.batch_elements_kwargs())


@pytest.mark.parametrize("arguments, error, message", [
    ({"max_batch_duration_secs": math.nan}, ValueError, "max_batch_duration_secs must be"),
    ({"max_batch_duration_secs": -1}, ValueError, "max_batch_duration_secs must be"),
    ({"max_batch_weight": math.inf, "element_size_fn": len}, ValueError, "max_batch_weight must"),
    ({"max_batch_weight": 0, "element_size_fn": len}, ValueError, "max_batch_weight must"),
    ({"max_batch_weight": 10}, ValueError, "needs element_size_fn"),
    ({"batch_bucket_boundaries": [8]}, ValueError, "needs batch_length_fn"),
    ({"batch_length_fn": len, "batch_bucket_boundaries": [8, 4]}, ValueError, "increasing"),
    ({"batch_length_fn": len, "batch_bucket_boundaries": []}, ValueError, "non-empty"),
    ({"batch_length_fn": len, "batch_bucket_boundaries": [math.nan]}, ValueError, "finite"),
    ({"batch_length_fn": 3}, TypeError, "batch_length_fn|length_fn must be a function"),
    ({"element_size_fn": "len"}, TypeError, "element_size_fn must be a function"),
])
def test_bad_batching_arguments_are_refused_when_the_handler_is_built(
    sklearn_model_path, arguments, error, message
):
    with pytest.raises(error, match=message):
        SklearnModelHandlerNumpy(sklearn_model_path, **arguments)


def test_a_handler_of_any_kind_is_checked_when_the_transform_is_built():
    with pytest.raises(ValueError, match="max_batch_weight must"):
        HandlerBatching(max_batch_weight=math.nan, element_size_fn=len)


@pytest.mark.parametrize("wrap", ["keyed", "maybe_keyed"])
def test_keyed_handlers_count_the_keys_bytes_as_beam_does(sklearn_model_path, wrap):
    batch = [("first key", numpy.zeros(4)), ("second", numpy.ones(4))]
    examples = [example for _, example in batch]
    ours_inner = SklearnModelHandlerNumpy(sklearn_model_path)
    beams_inner = beam_sklearn.SklearnModelHandlerNumpy(sklearn_model_path)
    ours_cls, beams_cls = {
        "keyed": (KeyedModelHandler, beam_base.KeyedModelHandler),
        "maybe_keyed": (MaybeKeyedModelHandler, beam_base.MaybeKeyedModelHandler),
    }[wrap]
    ours = ours_cls(ours_inner).get_num_bytes(batch) - ours_inner.get_num_bytes(examples)
    beams = beams_cls(beams_inner).get_num_bytes(batch) - beams_inner.get_num_bytes(examples)
    assert ours == beams == len(pickle.dumps(("first key", "second")))
