"""Refresh in a running streaming pipeline on the local runner: swaps, bad files, no data lost."""

from __future__ import annotations

import pickle
import threading
import time

import apache_beam as beam
import numpy
from apache_beam.transforms.periodicsequence import PeriodicImpulse

from liveinference import RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy

from pipeline_helpers import query_metrics
from refresh_models import constant_model, write_model

RATE_SECONDS = 0.05


def _stream(pipeline, seconds: float, rate: float = RATE_SECONDS):
    """A steady stream: one row every `rate` seconds for `seconds`, its time in feature 0."""
    start = time.time() + 0.5
    return (
        pipeline
        | PeriodicImpulse(start_timestamp=start, stop_timestamp=start + seconds, fire_interval=rate)
        | beam.Map(lambda t: numpy.array([float(t), 0.0, 0.0, 0.0]))
    )


def _later(actions):
    """Runs (delay, fn) actions on a thread, each `delay` seconds after the previous."""
    done = []

    def run():
        for delay, action in actions:
            time.sleep(delay)
            done.append((time.time(), action()))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return done


def _by_time(results):
    return sorted(results, key=lambda r: r.example[0])


def _run_models(results):
    """The sequence of distinct model labels predictions went through, in stream order."""
    runs = []
    for result in _by_time(results):
        label = int(result.inference)
        if not runs or runs[-1] != label:
            runs.append(label)
    return runs


def test_models_swap_mid_stream_bad_files_are_rejected_and_nothing_is_lost(run_pipeline, model_dir):
    watched = model_dir / "watched"
    handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"), max_batch_size=8)

    def slowly_written():
        payload = pickle.dumps(constant_model(4))
        with open(watched / "v4.pkl", "wb") as file:
            file.write(payload[: len(payload) // 2])
            file.flush()
            time.sleep(1.0)
            file.write(payload[len(payload) // 2:])
        return "v4"

    dropped = _later([
        (1.5, lambda: write_model(str(watched / "v2.pkl"), 2)),
        (1.5, lambda: (watched / "v3.pkl").write_bytes(b"corrupt model bytes")),
        (1.5, slowly_written),
        (1.5, lambda: write_model(str(watched / "v5.pkl"), 5)),
    ])

    def build(p):
        results, dlq = _stream(p, 9.0) | RunInference(
            handler, watch_model_pattern=str(watched / "*.pkl"), interval=0.2
        ).with_exception_handling()
        return {"results": results, "inferences": dlq.failed_inferences, "loads": dlq.failed_model_loads}

    out = run_pipeline(build, streaming=True)
    results = out["results"]
    assert len(dropped) == 4
    expected = len(numpy.arange(0, 9.0, RATE_SECONDS))
    assert abs(len(results) + len(out["inferences"]) - expected) <= 1
    assert out["inferences"] == []
    assert _run_models(results) == [1, 2, 4, 5]
    v2 = str(watched / "v2.pkl")
    assert {r.model_id for r in results if int(r.inference) == 2} == {v2}
    rejected = [(record.model_id, record.stage) for record in out["loads"]]
    assert rejected.count((str(watched / "v3.pkl"), "load_model")) == 1, "reported once"
    assert len(out["loads"]) <= 2, "the slowly written file fails at most once, half-way"
    v2_dropped_at = dropped[0][0]
    first_v2 = min(r.example[0] for r in results if int(r.inference) == 2)
    assert first_v2 > v2_dropped_at - 0.5


def test_reusing_a_file_name_swaps_in_the_rewritten_model(run_pipeline, model_dir):
    watched = model_dir / "watched"
    write_model(str(watched / "current.pkl"), 1)
    handler = SklearnModelHandlerNumpy(str(watched / "current.pkl"), max_batch_size=8)
    _later([(2.0, lambda: write_model(str(watched / "current.pkl"), 7))])

    def build(p):
        return {"results": _stream(p, 5.0) | RunInference(
            handler, watch_model_pattern=str(watched / "*.pkl"), interval=0.2
        )}

    results = run_pipeline(build, streaming=True)["results"]
    assert _run_models(results) == [1, 7]
    assert {r.model_id for r in results} == {str(watched / "current.pkl")}


def test_validation_keeps_a_rejected_model_from_serving(run_pipeline, model_dir):
    watched = model_dir / "watched"
    handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"), max_batch_size=8)
    _later([(1.0, lambda: write_model(str(watched / "v9.pkl"), 9)),
            (1.0, lambda: write_model(str(watched / "v2.pkl"), 2))])

    def must_not_predict_nine(predictions, model):
        return all(int(p.inference) != 9 for p in predictions)

    def build(p):
        results, dlq = _stream(p, 5.0) | RunInference(
            handler, watch_model_pattern=str(watched / "*.pkl"), interval=0.2
        ).with_exception_handling().with_model_validation(
            canary_examples=[numpy.zeros(4)], check=must_not_predict_nine
        )
        return {"results": results, "loads": dlq.failed_model_loads}

    out = run_pipeline(build, streaming=True)
    assert _run_models(out["results"]) == [1, 2]
    [rejected] = out["loads"]
    assert rejected.stage == "validate" and rejected.model_id == str(watched / "v9.pkl")
    counters, _ = query_metrics(run_pipeline.result, "BeamML_Sklearn")
    assert counters["failed_model_loads"] == 1
