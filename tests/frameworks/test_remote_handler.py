"""RemoteModelHandler as Beam 2.77 defines it: its arguments, subclass rules and rate limiter.

The HTTP handlers built on it are tested against a real server in test_remote_model_server.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from typing import Any, List

import pytest

import liveinference
from liveinference.errors import is_whole_batch_failure
from liveinference.remote import RateLimitExceeded, RemoteModelHandler
from liveinference.vertex_ai_inference import VertexAIModelHandlerJSON

# Beam 2.77's parameters, from apache_beam/ml/inference/base.py and vertex_ai_inference.py
# (Beam 2.62 has no RemoteModelHandler, and its Vertex AI module needs google-cloud-aiplatform).
BEAM_2_77_REMOTE = [
    "namespace", "num_retries", "throttle_delay_secs", "retry_filter",
    "window_ms", "bucket_ms", "overload_ratio", "rate_limiter",
]
BEAM_2_77_VERTEX = [
    "endpoint_id", "project", "location", "experiment", "network", "private", "invoke_route",
    "min_batch_size", "max_batch_size", "max_batch_duration_secs", "max_batch_weight",
    "element_size_fn", "batch_length_fn", "batch_bucket_boundaries", "kwargs",
]


class DoublingHandler(RemoteModelHandler):
    """Written as Beam's tests write remote handlers: attributes set before super().__init__.

    Its "server" doubles each example; `calls` counts the requests that reached it.
    """

    def __init__(self, **remote: Any) -> None:
        self._env_vars = {"LIVEINFERENCE_REMOTE_TEST": "set"}
        self.calls = 0
        super().__init__(namespace="DoublingHandler", initial_backoff_secs=0.001, **remote)

    def create_client(self) -> str:
        return "client"

    def request(self, batch, model, inference_args=None):
        self.calls += 1
        return [(model, 2 * example) for example in batch]


class RefuseFirst:
    """A rate limiter (Beam's `allow(hits_added=n)`) that refuses its first `refusals` calls."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.hits: List[int] = []

    def allow(self, hits_added: int = 1) -> bool:
        self.hits.append(hits_added)
        return len(self.hits) > self.refusals


def _names(function: Any) -> List[str]:
    return [name for name in inspect.signature(function).parameters if name != "self"]


def test_constructors_take_beams_arguments_then_ours():
    assert _names(RemoteModelHandler.__init__) == [
        *BEAM_2_77_REMOTE, "initial_backoff_secs", "max_backoff_secs"
    ]
    ours = _names(VertexAIModelHandlerJSON.__init__)
    assert ours == [*BEAM_2_77_VERTEX[:-1], "api_endpoint", "headers", "timeout_secs", "kwargs"]


def test_remote_modules_never_import_beams_inference_package():
    code = (
        "import sys, liveinference, liveinference.vertex_ai_inference\n"
        "import liveinference.frameworks.model_server\n"
        "assert not [m for m in sys.modules if m.startswith('apache_beam.ml')]\n"
    )
    library = os.path.dirname(os.path.dirname(liveinference.__file__))
    env = {**os.environ, "PYTHONPATH": library}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_remote_handlers_keep_retries_out_of_reach_of_overrides():
    with pytest.raises(TypeError, match="implement request\\(\\) instead"):

        class Overriding(RemoteModelHandler):  # noqa: F841 - the definition is refused
            def run_inference(self, batch, model, inference_args=None):
                return []


def test_attributes_set_before_the_base_constructor_are_kept(monkeypatch):
    monkeypatch.delenv("LIVEINFERENCE_REMOTE_TEST", raising=False)
    handler = DoublingHandler()
    handler.set_environment_vars()
    assert os.environ["LIVEINFERENCE_REMOTE_TEST"] == "set"
    assert handler.run_inference([1, 2], handler.load_model()) == [("client", 2), ("client", 4)]


def test_rate_limiter_refusals_are_retried_like_failed_calls():
    limiter = RefuseFirst(1)
    handler = DoublingHandler(num_retries=1, rate_limiter=limiter)
    assert handler.run_inference([1, 2, 3], "c") == [("c", 2), ("c", 4), ("c", 6)]
    assert limiter.hits == [3, 3]
    assert handler.calls == 1


def test_rate_limiter_that_keeps_refusing_sends_nothing():
    handler = DoublingHandler(num_retries=2, rate_limiter=RefuseFirst(10))
    with pytest.raises(RateLimitExceeded, match="refused a batch of 2 examples") as raised:
        handler.run_inference([1, 2], "c")
    assert raised.value.__notes__ == [
        "gave up after 3 tries (num_retries=2); the whole batch of 2 examples failed with it"
    ]
    assert is_whole_batch_failure(raised.value)
    assert handler.calls == 0


def test_errors_the_retry_filter_refuses_are_raised_at_once():
    limiter = RefuseFirst(10)
    handler = DoublingHandler(num_retries=5, rate_limiter=limiter, retry_filter=lambda e: False)
    with pytest.raises(RateLimitExceeded) as raised:
        handler.run_inference([1], "c")
    assert raised.value.__notes__ == ["not retried: retry_filter refused RateLimitExceeded"]
    assert not is_whole_batch_failure(raised.value)
    assert len(limiter.hits) == 1


@pytest.mark.parametrize(
    "arguments, expected",
    [
        ({"num_retries": -1}, "must not be negative"),
        ({"throttle_delay_secs": 0}, "throttle_delay_secs must be positive"),
        ({"window_ms": 5, "bucket_ms": 10}, "at most window_ms"),
    ],
)
def test_bad_retry_and_throttling_arguments_fail_at_construction(arguments, expected):
    with pytest.raises(ValueError, match=expected):
        DoublingHandler(**arguments)
