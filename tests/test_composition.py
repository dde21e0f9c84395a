"""Wrappers forward the whole contract; keyed and maybe-keyed handlers keep keys."""

from __future__ import annotations

import pickle

import apache_beam as beam
import numpy
import pytest

from liveinference import (
    KeyedModelHandler,
    KeyModelMapping,
    KeyModelPathMapping,
    MaybeKeyedModelHandler,
    ModelHandler,
    RunInference,
)
from liveinference.composition import Delegating
from liveinference.contract import CONTRACT_METHODS
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy


class _Recorder(ModelHandler):
    """Answers every contract method with its own name, so forwarding can be checked."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __getattribute__(self, name):
        if name in CONTRACT_METHODS:
            def record(*args, **kwargs):
                object.__getattribute__(self, "calls").append(name)
                return name
            return record
        return object.__getattribute__(self, name)


ARGS = {
    "run_inference": ([], None), "get_num_bytes": ([],), "validate_inference_args": (None,),
    "update_model_paths": (None,),
}


@pytest.mark.parametrize("wrap", [
    lambda h: h.with_preprocess_fn(str),
    lambda h: h.with_postprocess_fn(str),
    lambda h: h.with_no_batching(),
])
def test_wrappers_forward_every_contract_method(wrap):
    inner = _Recorder()
    wrapper = wrap(inner)
    assert isinstance(wrapper, Delegating)
    own = {"get_preprocess_fns", "get_postprocess_fns", "should_skip_batching"}
    for name in CONTRACT_METHODS:
        if name in own:
            continue
        assert getattr(wrapper, name)(*ARGS.get(name, ())) == name, name
    assert set(inner.calls) == set(CONTRACT_METHODS) - own


def test_preprocess_functions_run_last_added_first_and_postprocess_in_order():
    handler = SklearnModelHandlerNumpy("unused.pkl")
    wrapped = (
        handler.with_preprocess_fn(len).with_preprocess_fn(str)
        .with_postprocess_fn(abs).with_postprocess_fn(round)
    )
    assert list(wrapped.get_preprocess_fns()) == [str, len]
    assert list(wrapped.get_postprocess_fns()) == [abs, round]


def test_keyed_handler_keeps_keys(run_pipeline, sklearn_model_path, dataset):
    x, _ = dataset
    with open(sklearn_model_path, "rb") as file:
        expected = pickle.load(file).predict(x[:10])
    pairs = [(f"k{i}", x[i]) for i in range(10)]
    out = run_pipeline(
        lambda p: {"r": p | beam.Create(pairs) | RunInference(KeyedModelHandler(SklearnModelHandlerNumpy(sklearn_model_path)))}
    )["r"]
    assert sorted((key, result.inference) for key, result in out) == sorted(
        (f"k{i}", expected[i]) for i in range(10)
    )


def test_keyed_handler_refuses_inner_processing_functions(sklearn_model_path):
    with pytest.raises(ValueError, match="on the KeyedModelHandler instead"):
        KeyedModelHandler(SklearnModelHandlerNumpy(sklearn_model_path).with_preprocess_fn(str))


def test_per_key_models_serve_their_keys_within_the_model_bound(tmp_path, dataset):
    from sklearn.dummy import DummyClassifier

    x, y = dataset
    handlers = []
    for label in (0, 1, 2):
        path = tmp_path / f"m{label}.pkl"
        path.write_bytes(pickle.dumps(DummyClassifier(strategy="constant", constant=label).fit(x, [label] * len(x))))
        handlers.append(SklearnModelHandlerNumpy(str(path)))
    keyed = KeyedModelHandler(
        [KeyModelMapping(["a"], handlers[0]), KeyModelMapping(["b", "c"], handlers[1]), KeyModelMapping(["d"], handlers[2])],
        max_models_per_worker_hint=2,
    )
    models = keyed.load_model()
    batch = [("a", x[0]), ("b", x[1]), ("d", x[2]), ("c", x[3]), ("a", x[4])]
    results = keyed.run_inference(batch, models)
    # As in Beam, each key's examples run together: results come grouped by key.
    assert [(key, r.inference) for key, r in results] == [("a", 0), ("a", 0), ("b", 1), ("d", 2), ("c", 1)]
    assert models.loads == 3 and models.evictions == 1
    with pytest.raises(KeyError, match="no KeyModelMapping covers key 'z'"):
        keyed.run_inference([("z", x[0])], models)
    keyed.update_model_paths(models, [KeyModelPathMapping(["d"], handlers[0].get_model_id())])
    assert [r.inference for _, r in keyed.run_inference([("d", x[0])], models)] == [0]


def test_keyed_mappings_refuse_duplicate_and_empty_keys(sklearn_model_path):
    handler = SklearnModelHandlerNumpy(sklearn_model_path)
    with pytest.raises(ValueError, match="key 'a' is in KeyModelMapping #0 and #1"):
        KeyedModelHandler([KeyModelMapping(["a"], handler), KeyModelMapping(["a"], handler)])
    with pytest.raises(ValueError, match="has no keys"):
        KeyedModelHandler([KeyModelMapping([], handler)])


def test_maybe_keyed_handler_takes_keyed_or_unkeyed_batches(sklearn_model_path):
    handler = MaybeKeyedModelHandler(SklearnModelHandlerNumpy(sklearn_model_path))
    model = handler.load_model()
    keyed = list(handler.run_inference([("a", numpy.zeros(4))], model))
    unkeyed = list(handler.run_inference([numpy.zeros(4)], model))
    assert keyed[0][0] == "a" and keyed[0][1].inference == unkeyed[0].inference
    with pytest.raises(ValueError, match="mixes keyed"):
        handler.run_inference([("a", numpy.zeros(4)), numpy.zeros(4)], model)


def test_runinference_refuses_what_is_not_a_handler_and_unknown_keywords(sklearn_model_path):
    with pytest.raises(TypeError, match="needs a ModelHandler, got str"):
        RunInference("model.pkl")
    with pytest.raises(TypeError, match=r"unknown keyword arguments \['intervall'\]"):
        RunInference(SklearnModelHandlerNumpy(sklearn_model_path), intervall=3)
