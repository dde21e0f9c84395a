"""Event mode: a PCollection of ModelMetadata (from a watcher or from messages) swaps models."""

from __future__ import annotations

import json

import apache_beam as beam
import pytest

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

from liveinference.testing import when

from pipeline_helpers import query_metrics
from refresh_models import write_model
from streams import run_models, seen, stream


def _at_row(rows, index, event, label="EventAtRow"):
    """Events derived from the stream itself: `event` once row `index` has arrived."""
    return (
        rows
        | f"{label}Filter" >> beam.Filter(lambda row: int(row[1]) == index)
        | f"{label}Event" >> beam.Map(lambda _: event)
    )


def test_watch_file_pattern_events_swap_the_model(run_pipeline, model_dir):
    watched = model_dir / "watched"
    handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"), max_batch_size=8)
    steps = when([(seen(model_dir / "out" / "results", 10),
                   lambda: write_model(str(watched / "v2.pkl"), 2))])

    def build(p):
        rows, stop = stream(p, rows=100)
        events = p | WatchFilePattern(str(watched / "*.pkl"), interval=0.25, stop_timestamp=stop)
        return {
            "results": rows | RunInference(handler, model_metadata_pcoll=events, interval=0.2),
            "events": events,
        }

    out = run_pipeline(build, streaming=True)
    steps.join(timeout=5)
    assert run_models(out["results"]) == [1, 2]
    assert out["events"] == [ModelMetadata(str(watched / "v2.pkl"), "v2")]


def test_messages_from_an_unbounded_source_swap_the_model(run_pipeline, model_dir):
    v2 = write_model(str(model_dir / "v2.pkl"), 2)
    handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"), max_batch_size=8)
    message = json.dumps({"model_path": v2, "model_name": "challenger"}).encode()

    def build(p):
        rows, _ = stream(p, rows=80)
        events = _at_row(rows, 20, message, "Message") | ModelMetadataFromMessages()
        return {"results": rows | RunInference(
            handler, model_metadata_pcoll=events, interval=0.1, refresh_channel=str(channel)
        )}

    channel = model_dir / "channel"
    results = run_pipeline(build, streaming=True)["results"]
    assert len(list(channel.glob("run-*/event-*.json"))) == 1, "relayed through the given channel"
    assert run_models(results) == [1, 2]
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
    steps = when([(seen(model_dir / "out" / "results", 8),
                   lambda: write_model(str(watched / "fresh.pkl"), 2))])

    def build(p):
        rows, _ = stream(p, rows=40, rate=0.1)
        return {"results": rows | RunInference(
            handler, watch_model_pattern=str(watched / "*.pkl"), interval=0.2
        )}

    results = run_pipeline(build, streaming=True)["results"]
    steps.join(timeout=5)
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
        rows, _ = stream(p, rows=35, rate=0.1)
        events = _at_row(rows, 10, [KeyModelPathMapping(["a"], a2, "a-v2")])
        keyed = rows | beam.FlatMap(lambda row: [("a", row), ("b", row)])
        return {"results": keyed | RunInference(handler, model_metadata_pcoll=events, interval=0.1)}

    results = run_pipeline(build, streaming=True)["results"]
    for key, runs in (("a", [10, 20]), ("b", [11])):
        keyed = [result for k, result in results if k == key]
        assert run_models(keyed) == runs, key
    assert {r.model_id for k, r in results if k == "a" and int(r.inference) == 20} == {a2}


def test_a_new_run_with_the_same_model_identifier_does_not_replay_the_old_runs_event(
    run_pipeline, model_dir
):
    v1, v2 = str(model_dir / "v1.pkl"), write_model(str(model_dir / "v2.pkl"), 2)
    handler = SklearnModelHandlerNumpy(v1, max_batch_size=8)

    def run(name, events):
        def build(p):
            rows, _ = stream(p, rows=60, label=f"{name}Rows")
            served = p | f"{name}Events" >> beam.Create(events)
            return {name: rows | f"{name}Inference" >> RunInference(
                handler, model_metadata_pcoll=served, model_identifier="shared", interval=0.1
            )}
        return run_pipeline(build, streaming=True)[name]

    first = run("first", [ModelMetadata(v2, "v2")])
    assert run_models(first)[-1] == 2, "the first run served its event"
    second = run("second", [])
    assert {r.model_id for r in second} == {v1}, "the new run serves its own model, not the old event"
