"""Refresh in a running streaming pipeline on the local runner: swaps, bad files, no data lost.

Each test acts when the pipeline reaches a state (rows seen, a model served or rejected),
never after a fixed time.
"""

from __future__ import annotations

import pickle
import time

import numpy

from liveinference import RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.testing import when

from pipeline_helpers import query_metrics
from refresh_models import constant_model, write_model
from streams import run_models, seen, stream


def test_models_swap_mid_stream_bad_files_are_rejected_and_nothing_is_lost(
    run_pipeline, model_dir, refresh_log
):
    watched = model_dir / "watched"
    handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"), max_batch_size=8)

    def slowly_written():
        payload = pickle.dumps(constant_model(4))
        with open(watched / "v4.pkl", "wb") as file:
            file.write(payload[: len(payload) // 2])
            file.flush()
            time.sleep(1.0)  # a slow writer: the watcher must see the file half-written
            file.write(payload[len(payload) // 2:])
        return "v4"

    steps = when([
        (seen(model_dir / "out" / "results", 10), lambda: write_model(str(watched / "v2.pkl"), 2)),
        (lambda: refresh_log.logged("now serving", "v2.pkl"),
         lambda: (watched / "v3.pkl").write_bytes(b"corrupt model bytes")),
        (lambda: refresh_log.logged("rejected model", "v3.pkl"), slowly_written),
        (lambda: refresh_log.logged("now serving", "v4.pkl"),
         lambda: write_model(str(watched / "v5.pkl"), 5)),
    ])

    def build(p):
        rows, _ = stream(p, rows=240)
        results, dlq = rows | RunInference(
            handler, watch_model_pattern=str(watched / "*.pkl"), interval=0.2
        ).with_exception_handling()
        return {"results": results, "inferences": dlq.failed_inferences, "loads": dlq.failed_model_loads}

    out = run_pipeline(build, streaming=True)
    results = out["results"]
    dropped = steps.join(timeout=5)
    assert abs(len(results) + len(out["inferences"]) - 240) <= 1
    assert out["inferences"] == []
    assert run_models(results) == [1, 2, 4, 5]
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
    steps = when([(seen(model_dir / "out" / "results", 20),
                   lambda: write_model(str(watched / "current.pkl"), 7))])

    def build(p):
        rows, _ = stream(p, rows=100)
        return {"results": rows | RunInference(
            handler, watch_model_pattern=str(watched / "*.pkl"), interval=0.2
        )}

    results = run_pipeline(build, streaming=True)["results"]
    steps.join(timeout=5)
    assert run_models(results) == [1, 7]
    assert {r.model_id for r in results} == {str(watched / "current.pkl")}


def test_validation_keeps_a_rejected_model_from_serving(run_pipeline, model_dir, refresh_log):
    watched = model_dir / "watched"
    handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"), max_batch_size=8)
    steps = when([
        (seen(model_dir / "out" / "results", 10), lambda: write_model(str(watched / "v9.pkl"), 9)),
        (lambda: refresh_log.logged("rejected model", "v9.pkl"),
         lambda: write_model(str(watched / "v2.pkl"), 2)),
    ])

    def must_not_predict_nine(predictions, model):
        return all(int(p.inference) != 9 for p in predictions)

    def build(p):
        rows, _ = stream(p, rows=100)
        results, dlq = rows | RunInference(
            handler, watch_model_pattern=str(watched / "*.pkl"), interval=0.2
        ).with_exception_handling().with_model_validation(
            canary_examples=[numpy.zeros(4)], check=must_not_predict_nine
        )
        return {"results": results, "loads": dlq.failed_model_loads}

    out = run_pipeline(build, streaming=True)
    steps.join(timeout=5)
    assert run_models(out["results"]) == [1, 2]
    [rejected] = out["loads"]
    assert rejected.stage == "validate" and rejected.model_id == str(watched / "v9.pkl")
    counters, _ = query_metrics(run_pipeline.result, "BeamML_Sklearn")
    assert counters["failed_model_loads"] == 1
