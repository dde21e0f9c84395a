"""Model server handlers against a real HTTP model server started here, serving a model
trained here: TF Serving's and Vertex AI's predict routes, also slow, down and failing."""

from __future__ import annotations

import collections
import json
import logging
import pickle
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Deque, Dict, List, Optional, Tuple

import apache_beam as beam
import numpy
import pytest

from liveinference import FailureRecord, InvalidExampleError, RunInference
from liveinference.frameworks.model_server import ModelServerError, TFServingModelHandler
from liveinference.testing import query_metrics
from liveinference.vertex_ai_inference import VertexAIModelHandlerJSON

_LOG = logging.getLogger(__name__)

_ROUTES = (
    re.compile(r"^/v1/models/(?P<model>[^/:]+)(/versions/\d+|/labels/[^/:]+)?:predict$"),
    re.compile(r"^/v1/projects/[^/]+/locations/[^/]+/endpoints/(?P<endpoint>[^/:]+):predict$"),
    re.compile(r"^/v1/projects/[^/]+/locations/[^/]+/endpoints/(?P<invoke>[^/:]+)/invoke/.+$"),
)
DEPLOYED_MODEL_ID = "4242"
# Short backoff; throttling that looks back 50 ms and waits 60 ms, so one wait empties its
# window and a throttled call goes out after one wait.
FAST = {
    "initial_backoff_secs": 0.001,
    "max_backoff_secs": 0.01,
    "throttle_delay_secs": 0.06,
    "window_ms": 50,
    "bucket_ms": 10,
}


class ModelServer:
    """A threaded HTTP server answering TF Serving's and Vertex AI's predict APIs.

    `script` holds what the next requests get instead of predictions: "fail" (HTTP 503),
    "stall" (no answer until the server closes) or "short" (one prediction too few);
    `fail_all` answers 503 to everything.
    `requests` records (path, body) of every request.
    """

    def __init__(self, model: Any, model_name: str = "clf", token: Optional[str] = None) -> None:
        self.model, self.model_name, self.token = model, model_name, token
        self.script: Deque[str] = collections.deque()
        self.fail_all = False
        self.requests: List[Tuple[str, Dict[str, Any]]] = []
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._request_handler())
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def close(self) -> None:
        self.closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def answer(self, path: str, headers: Any, body: Dict[str, Any]) -> Tuple[int, Any]:
        with self._lock:
            self.requests.append((path, body))
            action = self.script.popleft() if self.script else ("fail" if self.fail_all else "")
        if action == "stall":
            self.closing.wait()
            return 503, {"error": "closing"}
        if action == "fail":
            return 503, {"error": "overloaded"}
        if self.token and headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"error": "missing or wrong bearer token"}
        match = next((m for m in (r.match(path) for r in _ROUTES) if m), None)
        if match is None or match.groupdict().get("model", self.model_name) != self.model_name:
            return 404, {"error": f"Servable not found for request: {path}"}
        try:
            predictions = self.model.predict(numpy.asarray(body["instances"], dtype=float))
        except (KeyError, ValueError) as error:
            return 400, {"error": str(error)}
        if action == "short":
            predictions = predictions[:-1]
        if "invoke" in match.groupdict():
            return 200, predictions.tolist()
        answer: Dict[str, Any] = {"predictions": predictions.tolist()}
        if "endpoint" in match.groupdict():
            answer["deployedModelId"] = DEPLOYED_MODEL_ID
        return 200, answer

    def _request_handler(self) -> type:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                status, answer = server.answer(
                    self.path, self.headers, json.loads(self.rfile.read(length))
                )
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    _LOG.info("client left before the answer to %s", self.path)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                _LOG.debug(format, *args)

        return Handler


@pytest.fixture
def model(sklearn_model_path: str) -> Any:
    with open(sklearn_model_path, "rb") as file:
        return pickle.load(file)


@pytest.fixture
def server(model: Any):
    running = ModelServer(model)
    yield running
    running.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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

    url = f"http://127.0.0.1:{_free_port()}"
    handler = TFServingModelHandler("clf", url, num_retries=3, retry_filter=counting_filter, **FAST)
    with pytest.raises(ModelServerError, match="no answer from model server .*running") as raised:
        handler.run_inference(_rows(dataset, 2), handler.load_model())
    assert len(tries) == 4
    assert raised.value.status is None
    assert raised.value.__notes__ == ["gave up after 4 tries (num_retries=3)"]


def test_down_server_dead_letters_every_element(run_pipeline, dataset):
    rows = _rows(dataset, 6)
    url = f"http://127.0.0.1:{_free_port()}"
    handler = TFServingModelHandler("clf", url, num_retries=1, max_batch_size=3, **FAST)

    def build(p: beam.Pipeline) -> Dict[str, Any]:
        results, dlq = p | beam.Create(rows) | RunInference(handler).with_exception_handling()
        return {"out": results, "dead": dlq.failed_inferences}

    outputs = run_pipeline(build)
    assert outputs["out"] == []
    dead: List[FailureRecord] = outputs["dead"]
    assert sorted(record.element for record in dead) == sorted(rows)
    assert {record.stage for record in dead} == {"inference"}
    assert all(f"no answer from model server {url}" in record.message for record in dead)
    assert {record.model_id for record in dead} == {f"{url}/v1/models/clf"}


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
    server.fail_all = True
    rows = _rows(dataset, 8)
    handler = TFServingModelHandler(
        "clf", server.url, num_retries=2, max_batch_size=4, **FAST
    )

    def build(p: beam.Pipeline) -> Dict[str, Any]:
        results, dlq = p | beam.Create(rows) | RunInference(handler).with_exception_handling()
        return {"out": results, "dead": dlq.failed_inferences}

    outputs = run_pipeline(build)
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
