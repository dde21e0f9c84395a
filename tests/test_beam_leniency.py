"""Lenient where Beam is lenient: the same handler runs through Beam's RunInference and ours.

- A handler that returns more or fewer results than examples: Beam emits what it returns
  (a keyed handler pairs keys with what comes back), and so do we; a framework handler's
  custom inference function likewise: examples and predictions pair as far as both go.
- A model shared across processes: an inference function returning a generator works in
  both; a shared model whose method returns a generator fails in Beam ("cannot pickle
  'generator' object") and works in ours, which sends the generator's items instead.
- The errors a pipeline raises are of Beam's types, or subclasses of them.
"""

from __future__ import annotations

import multiprocessing.managers

import apache_beam as beam
import numpy
import pytest
from apache_beam.ml.inference import base as beam_base
from apache_beam.ml.inference import sklearn_inference as beam_sklearn

import liveinference
from liveinference import sklearn_inference as our_sklearn

LIBRARIES = [beam_base, liveinference]


class Doubler:
    """A model: `predict` doubles each example; `predict_lazily` yields the doubles."""

    def predict(self, examples):
        return [example * 2 for example in examples]

    def predict_lazily(self, examples):
        return (example * 2 for example in examples)


def _handler(library, answer, shared=False, batch_size=None):
    """A handler on `library`'s base whose `run_inference` is `answer(batch, model)`."""

    class Handler(library.ModelHandler):
        def load_model(self):
            return Doubler()

        def run_inference(self, batch, model, inference_args=None):
            return answer(batch, model)

        def share_model_across_processes(self):
            return shared

        def batch_elements_kwargs(self):
            return {} if batch_size is None else {"min_batch_size": batch_size, "max_batch_size": batch_size}

    return Handler()


def fewer(batch, model):
    """Predictions for the even examples only."""
    kept = [example for example in batch if example % 2 == 0]
    return [(example, value) for example, value in zip(kept, model.predict(kept))]


def more(batch, model):
    """Two predictions per example."""
    return [(example, value) for example, value in zip(batch, model.predict(batch)) for _ in (1, 2)]


def _run(run_pipeline, library, make_handler, inputs):
    """Runs `inputs` through `library`'s RunInference; returns the sorted outputs."""
    name = library.__name__.replace(".", "_")
    out = run_pipeline(
        # One bundle, so both libraries form the same batches.
        lambda p: {name: p | beam.Create(inputs, reshuffle=False) | library.RunInference(make_handler(library))}
    )
    return sorted(out[name], key=repr)


@pytest.mark.parametrize("answer", [fewer, more])
def test_unkeyed_results_are_emitted_as_the_handler_returns_them(run_pipeline, answer):
    inputs = [1, 2, 3, 4, 5, 6]
    beams, ours = (_run(run_pipeline, library, lambda lib: _handler(lib, answer), inputs) for library in LIBRARIES)
    assert ours == beams == sorted(answer(inputs, Doubler()), key=repr)


@pytest.mark.parametrize("answer", [fewer, more])
def test_a_keyed_handler_pairs_keys_with_what_comes_back(run_pipeline, answer):
    inputs = [("k1", 1), ("k2", 2), ("k3", 3), ("k4", 4)]

    def keyed(library):
        return library.KeyedModelHandler(_handler(library, answer, batch_size=1))

    beams, ours = (_run(run_pipeline, library, keyed, inputs) for library in LIBRARIES)
    assert ours == beams and len(ours) == (2 if answer is fewer else 4)


@pytest.mark.parametrize("answer", [fewer, more])
def test_per_key_models_pair_every_result_with_its_key(run_pipeline, answer):
    inputs = [("a", 1), ("b", 2), ("a", 4), ("c", 6), ("b", 3)]

    def per_key(library):
        return library.KeyedModelHandler([
            library.KeyModelMapping(["a", "b"], _handler(library, answer)),
            library.KeyModelMapping(["c"], _handler(library, answer)),
        ])

    beams, ours = (_run(run_pipeline, library, per_key, inputs) for library in LIBRARIES)
    assert ours == beams and ours


def first_only(model, batch, inference_args=None):
    """A custom inference function that predicts the first example only."""
    return model.predict(numpy.stack(batch[:1]))


def twice(model, batch, inference_args=None):
    """A custom inference function that predicts every example twice."""
    return numpy.concatenate([model.predict(numpy.stack(batch))] * 2)


@pytest.mark.parametrize("inference_fn", [first_only, twice])
def test_a_framework_handler_pairs_examples_with_what_its_inference_function_returns(
    run_pipeline, sklearn_model_path, dataset, inference_fn
):
    x, _ = dataset
    inputs = list(x[:6])

    def sklearn(library):
        return _sklearn(library).SklearnModelHandlerNumpy(
            sklearn_model_path, inference_fn=inference_fn, min_batch_size=3, max_batch_size=3
        )

    beams, ours = (
        [(tuple(r.example), r.inference) for r in _run(run_pipeline, library, sklearn, inputs)]
        for library in LIBRARIES
    )
    assert sorted(ours) == sorted(beams)
    assert len(ours) == (2 if inference_fn is first_only else 6)  # batches of 3


def lazily(batch, model):
    """A generator of predictions, from the model's list."""
    return ((example, value) for example, value in zip(batch, model.predict(batch)))


def through_the_models_generator(batch, model):
    """Predictions from a model method that itself returns a generator."""
    return list(zip(batch, model.predict_lazily(batch)))


def test_a_shared_model_with_a_generator_inference_function_works_in_both(run_pipeline):
    inputs = [1, 2, 3]
    beams, ours = (
        _run(run_pipeline, library, lambda lib: _handler(lib, lazily, shared=True), inputs)
        for library in LIBRARIES
    )
    assert ours == beams == [(1, 2), (2, 4), (3, 6)]


def test_a_shared_model_method_returning_a_generator_fails_in_beam_and_works_in_ours(run_pipeline):
    def make(library):
        return _handler(library, through_the_models_generator, shared=True)

    with pytest.raises(multiprocessing.managers.RemoteError, match="cannot pickle 'generator' object"):
        _run(run_pipeline, beam_base, make, [1, 2, 3])
    assert _run(run_pipeline, liveinference, make, [1, 2, 3]) == [(1, 2), (2, 4), (3, 6)]


def _raised(library, build):
    """The exception a pipeline built by `build(library)` raises."""
    with pytest.raises(Exception) as caught:
        with beam.Pipeline() as pipeline:
            _ = build(pipeline, library)
    return caught.value


class LoadFails(Exception):
    """What the failing handler's load_model raises."""


def _failing(step):
    """A handler on a library's base whose `step` ("load" or "inference") raises."""

    def make(library):
        class Failing(library.ModelHandler):
            def load_model(self):
                if step == "load":
                    raise LoadFails("no model here")
                return Doubler()

            def run_inference(self, batch, model, inference_args=None):
                raise KeyError(f"no feature for {batch}")

        return Failing()

    return make


def _sklearn(library):
    return beam_sklearn if library is beam_base else our_sklearn


def _case(name, model_path):
    """`build(pipeline, library)` for a pipeline that fails as `name` says."""
    if name == "missing model file":
        return lambda p, lib: p | beam.Create([numpy.zeros(4)]) | lib.RunInference(
            _sklearn(lib).SklearnModelHandlerNumpy("/nonexistent/model.pkl"))
    if name == "examples of the wrong width":
        return lambda p, lib: p | beam.Create([numpy.zeros(3)]) | lib.RunInference(
            _sklearn(lib).SklearnModelHandlerNumpy(model_path))
    step = "load" if name == "a handler whose load fails" else "inference"
    return lambda p, lib: p | beam.Create([1]) | lib.RunInference(_failing(step)(lib))


@pytest.mark.parametrize("name", [
    "missing model file",
    "examples of the wrong width",
    "a handler whose load fails",
    "a handler whose inference fails",
])
def test_errors_are_of_beams_types_or_subclasses_of_them(sklearn_model_path, name):
    build = _case(name, sklearn_model_path)
    beams, ours = (_raised(library, build) for library in LIBRARIES)
    assert isinstance(ours, type(beams)), f"Beam raised {type(beams).__mro__}, we raised {type(ours).__mro__}"
