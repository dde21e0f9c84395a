"""The same mid-run swap on every runner we can run: local batch and streaming, and Prism."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time

import apache_beam as beam
import numpy
import pytest
from apache_beam.transforms.periodicsequence import PeriodicImpulse

from liveinference import RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy

from refresh_models import write_model
from test_streaming import _run_models

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
    deadline = time.time() + 30
    while time.time() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
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
def test_a_model_dropped_mid_run_serves_on_every_runner(runner, run_pipeline, model_dir, request):
    options = dict(RUNNERS[runner])
    if runner.startswith("prism"):
        options["job_endpoint"] = request.getfixturevalue("prism_endpoint")
    watched = model_dir / "watched"
    handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"), max_batch_size=4)
    dropper = threading.Timer(3.5, lambda: write_model(str(watched / "v2.pkl"), 2))

    def build(p):
        start = time.time() + 1.0
        dropper.start()
        rows = (
            p | PeriodicImpulse(start_timestamp=start, stop_timestamp=start + 6, fire_interval=0.1)
            | beam.Map(lambda t: numpy.array([float(t), 0.0, 0.0, 0.0]))
        )
        results, dlq = rows | RunInference(
            handler, watch_model_pattern=str(watched / "*.pkl"), interval=0.3
        ).with_exception_handling()
        return {"results": results, "failed": dlq.failed_inferences}

    out = run_pipeline(build, **options)
    assert len(out["results"]) + len(out["failed"]) == 60
    assert out["failed"] == []
    assert _run_models(out["results"]) == [1, 2]
