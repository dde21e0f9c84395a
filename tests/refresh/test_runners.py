"""The same mid-run swap on every runner we can run: local batch and streaming, and Prism."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from liveinference import RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.testing import wait_until, when

from refresh_models import write_model
from streams import paced_stream, run_models

PRISM = os.environ.get(
    "LIVEINFERENCE_PRISM", os.path.expanduser("~/.cache/liveinference/prism/v2.77.0/prism")
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def prism_endpoint():
    """A Prism job server on a free loopback port, stopped after the module's tests."""
    if not os.access(PRISM, os.X_OK):
        pytest.skip(reason=f"no Prism binary at {PRISM}; `make prism` builds it from the Go module proxy")
    port = _free_port()
    server = subprocess.Popen(
        [PRISM, "--job_port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, 30, f"Prism to listen on port {port}")
    yield f"localhost:{port}"
    server.terminate()
    server.wait(timeout=10)


RUNNERS = {
    "local-batch": {},
    "local-streaming": {"streaming": True},
    "prism-batch": {"runner": "PortableRunner", "environment_type": "LOOPBACK"},
    "prism-streaming": {"runner": "PortableRunner", "environment_type": "LOOPBACK", "streaming": True},
}


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_a_model_dropped_mid_run_serves_on_every_runner(
    runner, run_pipeline, model_dir, request, refresh_log
):
    options = dict(RUNNERS[runner])
    if runner.startswith("prism"):
        options["job_endpoint"] = request.getfixturevalue("prism_endpoint")
    watched = model_dir / "watched"
    handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"), max_batch_size=4)
    # Batch runners write results only at the end, so wait for the first model to serve.
    steps = when([(lambda: refresh_log.logged("loaded the first model"),
                   lambda: write_model(str(watched / "v2.pkl"), 2))], timeout=120)

    def build(p):
        rows = paced_stream(p, rows=60, rate=0.1)
        results, dlq = rows | RunInference(
            handler, watch_model_pattern=str(watched / "*.pkl"), interval=0.3
        ).with_exception_handling()
        return {"results": results, "failed": dlq.failed_inferences}

    out = run_pipeline(build, **options)
    steps.join(timeout=5)
    assert len(out["results"]) + len(out["failed"]) == 60
    assert out["failed"] == []
    assert run_models(out["results"]) == [1, 2]
