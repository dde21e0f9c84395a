"""The configured transform (what Java's RunInference builds) with the model server handlers,
against a real local HTTP server answering TF Serving's and Vertex AI's predict APIs with a
model trained here: predictions, a server that is down, arguments checked at construction."""

from __future__ import annotations

import apache_beam as beam
import pytest

from conftest import csv, load
from liveinference_expansion import ConfiguredRunInference
from local_model_server import ModelServer, down_server_url

PARSE = "liveinference_expansion.functions.parse_csv_floats"
FAST = {"initial_backoff_secs": 0.001, "max_backoff_secs": 0.01, "throttle_delay_secs": 0.05}


@pytest.fixture
def server(models):
    running = ModelServer(load(models["v1"]))
    yield running
    running.close()


@pytest.mark.parametrize("handler, args, path", [
    ("tfserving_json", {"model_name": "clf", "model_version": 3}, "/v1/models/clf/versions/3"),
    ("vertex_ai_json", {"endpoint_id": "9", "project": "p", "location": "eu"},
     "/v1/projects/p/locations/eu/endpoints/9"),
])
def test_model_server_handlers_predict_as_the_served_model(run_pipeline, models, server,
                                                          handler, args, path):
    where = {"server_url": server.url} if handler == "tfserving_json" else {
        "api_endpoint": server.url}
    transform = ConfiguredRunInference(
        handler, {**args, **where, "max_batch_size": 4, "num_retries": 1, **FAST},
        preprocess=[PARSE], example_type="array<double>", inference_type="int64",
    )
    x = models["x"][:10]
    out = run_pipeline(lambda p: {"r": p | beam.Create(csv(x)) | transform})
    got = {tuple(row.example): row.inference for row in out["r"]}
    assert got == {tuple(float(v) for v in row): int(label)
                   for row, label in zip(x, load(models["v1"]).predict(x))}
    model_id = f"{server.url}{path}" if handler == "tfserving_json" else path[len("/v1/"):]
    assert {row.model_id for row in out["r"]} == {model_id}
    assert {request_path for request_path, _ in server.requests} == {f"{path}:predict"}
    assert max(len(body["instances"]) for _, body in server.requests) <= 4


def test_a_down_server_dead_letters_every_row_naming_it(run_pipeline, models):
    url = down_server_url()
    transform = ConfiguredRunInference(
        "tfserving_json",
        {"model_name": "clf", "server_url": url, "num_retries": 2, "timeout_secs": 5, **FAST},
        preprocess=[PARSE], exception_handling=True,
    )
    lines = csv(models["x"][:6])
    out = run_pipeline(lambda p: p | beam.Create(lines) | transform)
    assert out["predictions"] == []
    assert len(out["dead_letters"]) == len(lines)
    assert {row.stage for row in out["dead_letters"]} == {"inference"}
    for row in out["dead_letters"]:
        assert f"no answer from model server {url}/v1/models/clf:predict" in row.error
        assert "gave up after 3 tries (num_retries=2)" in row.error


@pytest.mark.parametrize("args, error, message", [
    ({"num_retries": "3"}, TypeError, "'num_retries' must be an integer, got str '3'"),
    ({"rate_limiter": "x"}, TypeError, "has no argument(s) ['rate_limiter']"),
    ({"retry_filter": "subprocess.run"}, PermissionError,
     "'retry_filter' 'subprocess.run' is not in an allowed module"),
    ({"headers": "token"}, TypeError, "headers must be a mapping of header names to values"),
    ({"model_version": 1, "version_label": "stable"}, ValueError, "not both"),
])
def test_model_server_arguments_are_checked_at_construction(args, error, message):
    with pytest.raises(error) as raised:
        ConfiguredRunInference("tfserving_json", {"model_name": "clf", **args})
    assert message in str(raised.value)
