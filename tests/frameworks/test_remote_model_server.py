"""Model server handlers against a real HTTP model server started here, serving a model
trained here: TF Serving's and Vertex AI's predict routes, also slow, down and failing."""

from __future__ import annotations

import collections
import pickle
from typing import Any, Dict, List

import apache_beam as beam
import numpy
import pytest

from liveinference import FailureRecord, InvalidExampleError, RunInference
from liveinference.errors import is_whole_batch_failure
from liveinference.frameworks.model_server import ModelServerError, TFServingModelHandler
from liveinference.testing import query_metrics
from liveinference.vertex_ai_inference import VertexAIModelHandlerJSON
from local_model_server import ModelServer, down_server_url

# Short backoff; throttling that looks back 50 ms and waits 60 ms, so one wait empties its
# window and a throttled call goes out after one wait.
FAST = {
    "initial_backoff_secs": 0.001,
    "max_backoff_secs": 0.01,
    "throttle_delay_secs": 0.06,
    "window_ms": 50,
    "bucket_ms": 10,
}


@pytest.fixture
def model(sklearn_model_path: str) -> Any:
    with open(sklearn_model_path, "rb") as file:
        return pickle.load(file)


@pytest.fixture
def server(model: Any):
    running = ModelServer(model)
    yield running
    running.close()


def _rows(dataset: tuple, count: int) -> List[List[float]]:
    return [list(row) for row in dataset[0][:count]]


def test_tf_serving_handler_predicts_as_the_served_model(run_pipeline, server, model, dataset):
    rows = _rows(dataset, 30)
    handler = TFServingModelHandler("clf", server.url, model_version=2, max_batch_size=8)
    out = run_pipeline(lambda p: {"out": p | beam.Create(rows) | RunInference(handler)})["out"]
    got = {tuple(r.example): r.inference for r in out}
    assert [got[tuple(row)] for row in rows] == model.predict(numpy.asarray(rows)).tolist()
    assert {r.model_id for r in out} == {f"{server.url}/v1/models/clf/versions/2"}
    assert {path for path, _ in server.requests} == {"/v1/models/clf/versions/2:predict"}
    assert max(len(body["instances"]) for _, body in server.requests) <= 8


def test_vertex_handler_posts_vertex_shape_with_parameters(run_pipeline, server, model, dataset):
    rows = [numpy.asarray(row) for row in _rows(dataset, 12)]
    handler = VertexAIModelHandlerJSON("77", "proj", "europe-west4", api_endpoint=server.url)
    out = run_pipeline(
        lambda p: {
            "out": p
            | beam.Create(rows)
            | RunInference(handler, inference_args={"confidence": 0.5})
        }
    )["out"]
    assert sorted(r.inference for r in out) == sorted(model.predict(numpy.asarray(rows)).tolist())
    assert {r.model_id for r in out} == {"projects/proj/locations/europe-west4/endpoints/77"}
    path, body = server.requests[0]
    assert path == "/v1/projects/proj/locations/europe-west4/endpoints/77:predict"
    assert body["parameters"] == {"confidence": 0.5}


def test_server_errors_are_retried_until_the_server_recovers(server, model, dataset):
    server.script.extend(["fail", "fail"])
    handler = TFServingModelHandler("clf", server.url, num_retries=3, **FAST)
    rows = _rows(dataset, 5)
    results = handler.run_inference(rows, handler.load_model())
    assert [r.inference for r in results] == model.predict(numpy.asarray(rows)).tolist()
    assert len(server.requests) == 3


def test_slow_server_times_out_and_the_call_is_retried(server, model, dataset):
    server.script.append("stall")
    handler = TFServingModelHandler("clf", server.url, timeout_secs=0.3, num_retries=2, **FAST)
    rows = _rows(dataset, 3)
    results = handler.run_inference(rows, handler.load_model())
    assert [r.inference for r in results] == model.predict(numpy.asarray(rows)).tolist()
    assert len(server.requests) == 2


def test_client_errors_are_not_retried(server, dataset):
    handler = TFServingModelHandler("clf", server.url, num_retries=5, **FAST)
    with pytest.raises(ModelServerError, match="HTTP 400") as raised:
        handler.run_inference([[1.0, 2.0]], handler.load_model())
    assert raised.value.status == 400
    assert not is_whole_batch_failure(raised.value)
    assert len(server.requests) == 1


def test_unknown_model_names_the_fix(server):
    handler = TFServingModelHandler("other", server.url, **FAST)
    with pytest.raises(ModelServerError, match="HTTP 404.*check the model or endpoint name"):
        handler.run_inference([[0.0] * 4], handler.load_model())


def test_token_from_headers_function_reaches_the_server(model, dataset):
    secured = ModelServer(model, token="t0k")
    try:
        rows = _rows(dataset, 2)
        refused = TFServingModelHandler("clf", secured.url, **FAST)
        with pytest.raises(ModelServerError, match="HTTP 401.*credentials"):
            refused.run_inference(rows, refused.load_model())
        allowed = TFServingModelHandler(
            "clf", secured.url, headers=lambda: {"Authorization": "Bearer t0k"}, **FAST
        )
        results = allowed.run_inference(rows, allowed.load_model())
        assert [r.inference for r in results] == model.predict(numpy.asarray(rows)).tolist()
        assert len(secured.requests) == 2
    finally:
        secured.close()


def test_down_server_is_retried_then_raises_naming_it(dataset):
    tries: List[Exception] = []

    def counting_filter(error: Exception) -> bool:
        tries.append(error)
        return True

    url = down_server_url()
    handler = TFServingModelHandler("clf", url, num_retries=3, retry_filter=counting_filter, **FAST)
    with pytest.raises(ModelServerError, match="no answer from model server .*running") as raised:
        handler.run_inference(_rows(dataset, 2), handler.load_model())
    assert len(tries) == 4
    assert raised.value.status is None
    assert raised.value.__notes__ == [
        "gave up after 4 tries (num_retries=3); the whole batch of 2 examples failed with it"
    ]
    assert is_whole_batch_failure(raised.value)


def _dead_letter_run(handler: Any, rows: List[Any]) -> Any:
    """Builds a pipeline function: RunInference with dead letters, metrics in "remote"."""

    def build(p: beam.Pipeline) -> Dict[str, Any]:
        inference = RunInference(handler, metrics_namespace="remote")
        results, dlq = p | beam.Create(rows) | inference.with_exception_handling()
        return {"out": results, "dead": dlq.failed_inferences}

    return build


def test_down_server_dead_letters_every_element_without_splitting(run_pipeline, dataset,
                                                                  caplog):
    rows = _rows(dataset, 64)
    url = down_server_url()
    handler = TFServingModelHandler(
        "clf", url, num_retries=2, min_batch_size=64, max_batch_size=64, **FAST
    )
    outputs = run_pipeline(_dead_letter_run(handler, rows))
    assert outputs["out"] == []
    dead: List[FailureRecord] = outputs["dead"]
    assert sorted(record.element for record in dead) == sorted(rows)
    assert {record.stage for record in dead} == {"inference"}
    assert all(f"no answer from model server {url}" in record.message for record in dead)
    assert all("gave up after 3 tries (num_retries=2)" in record.message for record in dead)
    assert {record.model_id for record in dead} == {f"{url}/v1/models/clf"}
    # Nothing answers, so the handler's log counts the tries: a warning per retry, an error
    # when it gives up (once per batch).
    tries = collections.Counter(
        record.levelname for record in caplog.records
        if record.name == "TFServingModelHandler" and record.levelname in ("WARNING", "ERROR")
    )
    counters, _ = query_metrics(run_pipeline.result, "remote")
    assert tries == {"WARNING": 2 * counters["failed_batches_counter"],
                     "ERROR": counters["failed_batches_counter"]}


def test_unavailable_server_gets_each_batch_its_tries_only(run_pipeline, server, dataset):
    server.fail_all = True
    rows = _rows(dataset, 64)
    handler = TFServingModelHandler(
        "clf", server.url, num_retries=2, min_batch_size=64, max_batch_size=64, **FAST
    )
    outputs = run_pipeline(_dead_letter_run(handler, rows))
    sent = collections.Counter(tuple(map(tuple, body["instances"])) for _, body in server.requests)
    assert set(sent.values()) == {3}
    assert sorted(row for batch in sent for row in batch) == sorted(map(tuple, rows))
    assert sorted(record.element for record in outputs["dead"]) == sorted(rows)
    assert all(
        "HTTP 503" in record.message and "gave up after 3 tries" in record.message
        for record in outputs["dead"]
    )


def test_refused_rows_are_dead_lettered_and_the_rest_predicted(run_pipeline, server, dataset):
    good = _rows(dataset, 5)
    bad = [1.0, 2.0]
    handler = TFServingModelHandler("clf", server.url, max_batch_size=6, **FAST)

    def build(p: beam.Pipeline) -> Dict[str, Any]:
        inputs = p | beam.Create([*good[:2], bad, *good[2:]])
        results, dlq = inputs | RunInference(handler).with_exception_handling()
        return {"out": results, "dead": dlq.failed_inferences}

    outputs = run_pipeline(build)
    assert sorted(r.example for r in outputs["out"]) == sorted(good)
    assert [record.element for record in outputs["dead"]] == [bad]
    assert "HTTP 400" in outputs["dead"][0].message


def test_persistent_failures_throttle_requests(run_pipeline, server, dataset):
    # Each batch is tried 3 times; its second and third tries are throttled with a chance of
    # 1/2 and 2/3 (no success in the window), so 8 batches or more all pass with < 1e-6.
    server.fail_all = True
    rows = _rows(dataset, 32)
    handler = TFServingModelHandler(
        "clf", server.url, num_retries=2, max_batch_size=4, **FAST
    )
    outputs = run_pipeline(_dead_letter_run(handler, rows))
    assert len(outputs["out"]) + len(outputs["dead"]) == len(rows)
    assert all("HTTP 503" in record.message for record in outputs["dead"])
    counters, _ = query_metrics(run_pipeline.result, "TFServingModelHandler")
    assert counters.get("throttled_requests", 0) > 0


def test_vertex_invoke_route_pairs_a_list_answer(server, model, dataset):
    handler = VertexAIModelHandlerJSON(
        "5", "p", "us-east1", invoke_route="/predict/v1", api_endpoint=server.url
    )
    rows = _rows(dataset, 4)
    results = handler.run_inference(rows, handler.load_model())
    assert [r.inference for r in results] == model.predict(numpy.asarray(rows)).tolist()
    assert server.requests[0][0] == "/v1/projects/p/locations/us-east1/endpoints/5/invoke/predict/v1"


def test_vertex_private_endpoint_needs_its_address():
    with pytest.raises(ValueError, match="private: pass api_endpoint"):
        VertexAIModelHandlerJSON("5", "p", "us-east1", network="n", private=True)


def test_short_answers_are_paired_as_far_as_they_go(server, model, dataset, caplog):
    server.script.append("short")
    handler = TFServingModelHandler("clf", server.url, **FAST)
    rows = _rows(dataset, 4)
    results = handler.run_inference(rows, handler.load_model())
    assert [r.example for r in results] == rows[:3]
    assert [r.inference for r in results] == model.predict(numpy.asarray(rows[:3])).tolist()
    assert "answered 3 predictions for 4 examples" in caplog.text


def test_examples_json_cannot_write_are_refused_before_sending(server):
    handler = TFServingModelHandler("clf", server.url, **FAST)
    with pytest.raises(InvalidExampleError, match="cannot send a set to a model server as JSON"):
        handler.run_inference([{1.0, 2.0}], handler.load_model())
    assert server.requests == []


def test_constructor_arguments_reach_batching_retries_and_environment():
    length, size = len, len
    vertex = VertexAIModelHandlerJSON(
        "5", "p", "us-east1", max_batch_size=8, max_batch_weight=100, element_size_fn=size,
        batch_length_fn=length, batch_bucket_boundaries=[4, 16], num_retries=1,
        env_vars={"MODEL_SERVER_TEST": "1"},
    )
    assert vertex.batch_elements_kwargs() == {
        "max_batch_size": 8, "max_batch_weight": 100, "element_size_fn": size,
        "length_fn": length, "bucket_boundaries": [4, 16],
    }
    assert vertex.num_retries == 1 and vertex._env_vars == {"MODEL_SERVER_TEST": "1"}
    assert vertex.logger.name == "VertexAIModelHandlerJSON"
    tf_serving = TFServingModelHandler("clf", min_batch_size=2, max_batch_duration_secs=5)
    assert tf_serving.batch_elements_kwargs() == {"min_batch_size": 2, "max_batch_duration_secs": 5}
    assert tf_serving.logger.name == "TFServingModelHandler"


@pytest.mark.parametrize("kwargs, error, message", [
    ({"batching": {"max_batch_size": 2}}, TypeError, r"unknown keyword arguments \['batching'\]"),
    ({"namespace": "x"}, TypeError, r"unknown keyword arguments \['namespace'\]"),
    ({"max_batch_weight": 10}, TypeError, r"unknown keyword arguments \['max_batch_weight'\]"),
    ({"max_batch_duration_secs": 0}, ValueError, "max_batch_duration_secs"),
])
def test_arguments_a_model_server_handler_does_not_take_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        TFServingModelHandler("clf", **kwargs)
