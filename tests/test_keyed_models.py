"""Per-key models in a pipeline: each key served by its model, at most N loaded, loads and
evictions reported as Beam metrics."""

from __future__ import annotations

import pickle

import apache_beam as beam
import numpy
from apache_beam.metrics.metric import MetricsFilter

from liveinference import KeyedModelHandler, KeyModelMapping, RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy

ROW = numpy.zeros(4)


def _constant_models(tmp_path, dataset):
    """Three models that always answer 0, 1 and 2: a prediction names the model that made it."""
    from sklearn.dummy import DummyClassifier

    x, _ = dataset
    paths = {}
    for key, label in (("a", 0), ("b", 1), ("c", 2)):
        path = tmp_path / f"model-{key}.pkl"
        path.write_bytes(pickle.dumps(DummyClassifier(strategy="constant", constant=label).fit(x, [label] * len(x))))
        paths[key] = str(path)
    return paths


def _counters(result, namespace):
    query = result.metrics().query(MetricsFilter().with_namespace(namespace))
    return {counter.key.metric.name: counter.committed for counter in query["counters"]}


def test_three_models_with_room_for_two_predict_every_key_and_count_loads_and_evictions(run_pipeline, tmp_path, dataset):
    paths = _constant_models(tmp_path, dataset)
    mappings = [KeyModelMapping([key], SklearnModelHandlerNumpy(path)) for key, path in paths.items()]
    # Either order of the two batches loads four times and evicts twice: after the first
    # batch two models are loaded, and the second batch needs the third one first or last.
    batches = [
        [("a", ROW), ("b", ROW), ("c", ROW), ("a", ROW)],
        [("c", ROW), ("b", ROW), ("a", ROW), ("c", ROW)],
    ]

    def build(p):
        source = p | beam.Create(batches, reshuffle=False)
        default = KeyedModelHandler(mappings, max_models_per_worker_hint=2).with_no_batching()
        named = KeyedModelHandler(mappings, max_models_per_worker_hint=2).with_no_batching()
        return {
            "default": source | "Default" >> RunInference(default),
            "named": source | "Named" >> RunInference(named, metrics_namespace="customers"),
        }

    out = run_pipeline(build)
    labels = {"a": 0, "b": 1, "c": 2}
    for name in ("default", "named"):
        assert len(out[name]) == 8
        assert sorted(key for key, _ in out[name]) == sorted(key for batch in batches for key, _ in batch)
        for key, result in out[name]:
            assert result.inference == labels[key], (name, key)
            assert result.model_id == paths[key]
    for namespace in ("BeamML_KeyedModels", "customers"):
        counters = _counters(run_pipeline.result, namespace)
        assert counters["num_model_loads"] == 4, namespace
        assert counters["num_model_evictions"] == 2, namespace
        assert counters["num_inferences"] == 8, namespace


def test_without_a_bound_every_model_loads_once_and_none_is_evicted(run_pipeline, tmp_path, dataset):
    paths = _constant_models(tmp_path, dataset)
    handler = KeyedModelHandler([KeyModelMapping([key], SklearnModelHandlerNumpy(path)) for key, path in paths.items()])
    pairs = [(key, ROW) for key in "abcabcab"]
    out = run_pipeline(lambda p: {"r": p | beam.Create(pairs) | RunInference(handler)})["r"]
    assert sorted((key, result.inference) for key, result in out) == sorted((key, "abc".index(key)) for key, _ in pairs)
    counters = _counters(run_pipeline.result, "BeamML_KeyedModels")
    assert counters["num_model_loads"] == 3
    assert counters.get("num_model_evictions", 0) == 0


def test_loads_are_counted_when_inference_runs_under_a_timeout(run_pipeline, tmp_path, dataset):
    paths = _constant_models(tmp_path, dataset)
    handler = KeyedModelHandler([KeyModelMapping([key], SklearnModelHandlerNumpy(path)) for key, path in paths.items()])
    pairs = [(key, ROW) for key in "abcabc"]

    def build(p):
        results, _ = p | beam.Create(pairs) | RunInference(handler).with_exception_handling(timeout=30)
        return {"r": results}

    out = run_pipeline(build)["r"]
    assert len(out) == 6
    assert _counters(run_pipeline.result, "BeamML_KeyedModels")["num_model_loads"] == 3
