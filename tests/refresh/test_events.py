"""Event mode: a PCollection of ModelMetadata (from a watcher or from messages) swaps models."""

from __future__ import annotations

import json
import time

import apache_beam as beam
import numpy
import pytest
from apache_beam.transforms.periodicsequence import PeriodicImpulse

from liveinference import (
    KeyedModelHandler,
    KeyModelMapping,
    KeyModelPathMapping,
    ModelMetadata,
    ModelMetadataFromMessages,
    RunInference,
    WatchFilePattern,
    model_metadata_from_message,
)
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy

from pipeline_helpers import query_metrics
from refresh_models import write_model
from test_streaming import _later, _run_models, _stream


def test_watch_file_pattern_events_swap_the_model(run_pipeline, model_dir):
    watched = model_dir / "watched"
    handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"), max_batch_size=8)
    _later([(1.5, lambda: write_model(str(watched / "v2.pkl"), 2))])

    def build(p):
        stop = time.time() + 5
        events = p | WatchFilePattern(str(watched / "*.pkl"), interval=0.25, stop_timestamp=stop)
        return {
            "results": _stream(p, 4.0) | RunInference(handler, model_metadata_pcoll=events, interval=0.2),
            "events": events,
        }

    out = run_pipeline(build, streaming=True)
    assert _run_models(out["results"]) == [1, 2]
    assert out["events"] == [ModelMetadata(str(watched / "v2.pkl"), "v2")]


def test_messages_from_an_unbounded_source_swap_the_model(run_pipeline, model_dir):
    v2 = write_model(str(model_dir / "v2.pkl"), 2)
    handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"), max_batch_size=8)
    message = json.dumps({"model_path": v2, "model_name": "challenger"}).encode()

    def build(p):
        start = time.time() + 0.5
        messages = (
            p | "MessageClock" >> PeriodicImpulse(
                start_timestamp=start + 1.5, stop_timestamp=start + 1.6, fire_interval=1
            )
            | "AsMessage" >> beam.Map(lambda _: message)
        )
        events = messages | ModelMetadataFromMessages()
        return {"results": _stream(p, 4.0) | RunInference(
            handler, model_metadata_pcoll=events, interval=0.1, refresh_channel=str(channel)
        )}

    channel = model_dir / "channel"
    results = run_pipeline(build, streaming=True)["results"]
    assert (channel / "current.json").exists(), "events are relayed through the given channel"
    assert _run_models(results) == [1, 2]
    assert {r.model_id for r in results if int(r.inference) == 2} == {v2}


def test_a_message_names_its_model_or_says_what_is_missing():
    assert model_metadata_from_message(b'{"model_path": "/m/v2.pkl"}') == ModelMetadata("/m/v2.pkl", "v2")
    assert model_metadata_from_message("/m/v3.onnx") == ModelMetadata("/m/v3.onnx", "v3")
    assert model_metadata_from_message({"path": "/m/a.pt", "name": "A"}, "path", "name") == ModelMetadata("/m/a.pt", "A")
    with pytest.raises(ValueError, match="has no 'model_path' string"):
        model_metadata_from_message(b'{"model": "/m/v2.pkl"}')
    with pytest.raises(ValueError, match="is not valid JSON"):
        model_metadata_from_message("{model_path: oops")


def test_metrics_are_prefixed_by_the_model_name_after_a_refresh(run_pipeline, model_dir):
    watched = model_dir / "watched"
    handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"), max_batch_size=4)
    _later([(1.0, lambda: write_model(str(watched / "fresh.pkl"), 2))])

    def build(p):
        return {"results": _stream(p, 3.0, rate=0.25) | RunInference(
            handler, watch_model_pattern=str(watched / "*.pkl"), interval=0.2
        )}

    results = run_pipeline(build, streaming=True)["results"]
    counters, distributions = query_metrics(run_pipeline.result, "BeamML_Sklearn")
    by_model = {label: sum(1 for r in results if int(r.inference) == label) for label in (1, 2)}
    assert counters["num_inferences"] == by_model[1]
    assert counters["fresh_num_inferences"] == by_model[2] > 0
    assert distributions["load_model_latency_milli_secs"].count == 1
    assert distributions["fresh_load_model_latency_milli_secs"].count == 1


def test_per_key_models_are_refreshed_per_key(run_pipeline, model_dir):
    a2 = write_model(str(model_dir / "a2.pkl"), 20)
    handler = KeyedModelHandler([
        KeyModelMapping(["a"], SklearnModelHandlerNumpy(write_model(str(model_dir / "a1.pkl"), 10))),
        KeyModelMapping(["b"], SklearnModelHandlerNumpy(write_model(str(model_dir / "b1.pkl"), 11))),
    ])

    def build(p):
        start = time.time() + 0.5
        events = (
            p | "EventClock" >> PeriodicImpulse(start_timestamp=start + 1.5, stop_timestamp=start + 1.6, fire_interval=1)
            | beam.Map(lambda _: [KeyModelPathMapping(["a"], a2, "a-v2")])
        )
        rows = (
            p | PeriodicImpulse(start_timestamp=start, stop_timestamp=start + 3.5, fire_interval=0.1)
            | beam.FlatMap(lambda t: [("a", numpy.array([t, 0, 0, 0])), ("b", numpy.array([t, 0, 0, 0]))])
        )
        return {"results": rows | RunInference(handler, model_metadata_pcoll=events, interval=0.1)}

    results = run_pipeline(build, streaming=True)["results"]
    for key, runs in (("a", [10, 20]), ("b", [11])):
        keyed = [result for k, result in results if k == key]
        assert _run_models(keyed) == runs, key
    assert {r.model_id for k, r in results if k == "a" and int(r.inference) == 20} == {a2}
