"""The service's container image (expansion/container/), started with testcontainers: it
expands requests and runs the Python steps of a pipeline inside the container.

Skips, naming the reason, where no Docker engine is reachable or the image is not built
(`make docker-image`). Where the `dockerd` binary is installed but not running (as after
`make docker-image`, which stops what it starts), this test starts it and stops it again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.fully_qualified_named_transform import (
    PYTHON_FULLY_QUALIFIED_NAMED_TRANSFORM_URN,
    FullyQualifiedNamedTransform,
)

from conftest import csv, load
from examples import xlang_runtime
from liveinference_expansion import TRANSFORM_NAME
from test_service import PARSE, refused

pytestmark = pytest.mark.slow
IMAGE_TAG_FILE = xlang_runtime.CACHE / "expansion-image.tag"


def _docker_reachable() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=30
    ).returncode == 0


@pytest.fixture(scope="module")
def docker_engine(tmp_path_factory):
    """A reachable Docker engine: the running one, or a dockerd started (and stopped) here."""
    if _docker_reachable():
        yield
        return
    if shutil.which("dockerd") is None or os.geteuid() != 0:
        pytest.skip(reason="no Docker engine is reachable (`docker info` fails) and none can be "
                    "started here (needs the dockerd binary and root); `make docker-image` "
                    "installs Debian's docker.io")
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    with open(log, "wb") as out:
        daemon = subprocess.Popen(["dockerd", "--bridge=none", "--iptables=false"],
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _docker_reachable():
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.skip(reason=f"dockerd did not start: {log.read_text()[-500:]}")
            time.sleep(0.5)
        yield
    finally:
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


@pytest.fixture(scope="module")
def image(docker_engine) -> str:
    if not IMAGE_TAG_FILE.exists():
        pytest.skip(reason=f"the service image is not built ({IMAGE_TAG_FILE} is missing); "
                    "run `make docker-image`")
    tag = IMAGE_TAG_FILE.read_text().strip()
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode:
        pytest.skip(reason=f"image {tag} is not in this Docker engine; run `make docker-image`")
    return tag


def test_containerized_service_expands_and_runs_inference(image, models, tmp_path, monkeypatch):
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")  # its image cannot be pulled
    model_dir = Path(models["v1"]).parent
    port = xlang_runtime.free_port()
    # The worker pool's private Unix socket, in a 0700 folder shared with the container.
    pool_dir = tmp_path / "pool"
    pool_dir.mkdir(mode=0o700)
    container = (
        DockerContainer(image)
        .with_command(f"--port {port} --worker-pool-dir {pool_dir}")
        .with_kwargs(network_mode="host")
        .with_volume_mapping(str(model_dir), str(model_dir), "ro")
        .with_volume_mapping(str(pool_dir), str(pool_dir), "rw")
    )
    with container:
        wait_for_logs(container, "listening on", timeout=120)
        address = f"127.0.0.1:{port}"
        assert "unknown handler 'nope'" in refused(address, handler="nope")
        # A pipeline whose RunInference is expanded by, and runs in, the container.
        kwargs = dict(
            handler="sklearn_numpy", handler_args=beam.Row(model_uri=str(models["v1"])),
            preprocess=[PARSE], exception_handling=True,
        )
        payload = FullyQualifiedNamedTransform(TRANSFORM_NAME, (), kwargs)
        expected = [int(v) for v in load(models["v1"]).predict(models["x"][:8])]
        with beam.Pipeline() as pipeline:
            out = (
                pipeline
                | beam.Create(csv(models["x"][:8]) + ["1,2,x,4"])
                | beam.ExternalTransform(
                    PYTHON_FULLY_QUALIFIED_NAMED_TRANSFORM_URN,
                    payload.to_runner_api_parameter(None)[1].SerializeToString(),
                    address,
                )
            )
            assert_that(out["predictions"] | beam.Map(lambda row: row.inference),
                        equal_to(expected), label="Predictions")
            assert_that(out["dead_letters"] | beam.Map(lambda row: (row.element, row.stage)),
                        equal_to([("1,2,x,4", "preprocess[0]")]), label="DeadLetters")
        logs = container.get_logs()[1].decode(errors="replace")
        # The Python steps ran in the container: its worker pool started an SDK worker.
        assert "Starting worker" in logs, logs[-2000:]
