"""Fixtures for the cross-language tests: models trained here, the service, the runners.

The heavy pieces (Maven build, Prism, Flink job server) come from `make test`'s setup
targets; run alone, a test that lacks one skips and names the make target, unless
LIVEINFERENCE_REQUIRE_XLANG=1 (set by `make test`) makes a missing piece a failure.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Iterator

import numpy
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from examples import xlang_runtime

FEATURES = 4


def require(*pieces: str) -> None:
    """Skips (or, under `make test`, fails) when a built piece is missing."""
    missing = xlang_runtime.missing_pieces(*pieces)
    if missing:
        message = "missing " + "; ".join(missing)
        if os.environ.get("LIVEINFERENCE_REQUIRE_XLANG") == "1":
            pytest.fail(message)
        pytest.skip(reason=message)


def process_environment(job_endpoint: str, boot_command: str) -> PipelineOptions:
    """Options of a Python pipeline whose runner starts its workers with `boot_command`."""
    return PipelineOptions([
        "--runner=PortableRunner", f"--job_endpoint={job_endpoint}",
        "--environment_type=PROCESS",
        f"--environment_config={json.dumps({'command': boot_command})}",
    ])


def train(path: Path, flip: bool = False, seed: int = 0) -> numpy.ndarray:
    """Trains a LogisticRegression (labels flipped if asked), pickles it, returns its X."""
    from sklearn.linear_model import LogisticRegression

    rng = numpy.random.default_rng(seed)
    x = rng.normal(size=(200, FEATURES))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(x, 1 - y if flip else y)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        pickle.dump(model, file)
    return x


def load(path: Path):
    with open(path, "rb") as file:
        return pickle.load(file)


def csv(rows: numpy.ndarray) -> list:
    return [",".join(repr(float(value)) for value in row) for row in rows]


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """v1 (a classifier) and v2 (the same data, labels flipped), and rows to classify."""
    root = tmp_path_factory.mktemp("models")
    x = train(root / "v1.pkl")
    train(root / "v2.pkl", flip=True)
    return {"v1": root / "v1.pkl", "v2": root / "v2.pkl", "x": x}


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory,
            models: dict) -> Iterator[xlang_runtime.Running]:
    """One expansion service (with its worker pool) for the session, on loopback, whose model
    root is the folder of `models`."""
    with xlang_runtime.start_service(tmp_path_factory.mktemp("service"), "--model-root",
                                     str(models["v1"].parent)) as running:
        yield running


@pytest.fixture(scope="session")
def process_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[xlang_runtime.Running]:
    """A service that hands out a PROCESS environment (the runner starts the Python workers
    with the service's `boot` command): Beam's Flink job server cannot dial the worker pool's
    Unix socket."""
    with xlang_runtime.start_service(tmp_path_factory.mktemp("process-service"),
                                     "--process-workers") as running:
        yield running


@pytest.fixture(scope="session")
def java() -> None:
    """Requires the Maven build (`make java-build`); a Java test module uses it for all its tests."""
    require("java")


@pytest.fixture(scope="module")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[xlang_runtime.Running]:
    """Prism's job server, one per test module (`make prism` builds it)."""
    require("prism")
    with xlang_runtime.start_prism(tmp_path_factory.mktemp("prism")) as running:
        yield running


@pytest.fixture(scope="module")
def flink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[xlang_runtime.Running]:
    """Beam's Flink job server in local mode, one per test module (`make flink-jobserver`)."""
    require("flink")
    with xlang_runtime.start_flink(tmp_path_factory.mktemp("flink")) as running:
        yield running
