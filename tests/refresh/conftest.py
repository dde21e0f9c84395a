"""Fixtures for refresh tests."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
from typing import List

import pytest

from liveinference.testing import wait_until

from refresh_models import write_model


@pytest.fixture
def model_dir(tmp_path):
    """A folder holding model v1.pkl (predicts 1) and an empty 'watched' subfolder."""
    write_model(str(tmp_path / "v1.pkl"), 1)
    (tmp_path / "watched").mkdir()
    return tmp_path


class RefreshLog(logging.Handler):
    """Keeps liveinference's log lines, so a test can wait for "a model served" and the like.

    Works for runners whose workers run in the test process (the local runners, and Prism
    or Flink with the LOOPBACK environment).
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self._lines: List[str] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            self._lines.append(record.getMessage())

    def logged(self, *parts: str) -> bool:
        """True once a line holding every one of `parts` was logged."""
        with self._guard:
            return any(all(part in line for part in parts) for line in self._lines)


@pytest.fixture
def refresh_log():
    """Collects liveinference's log lines of one test."""
    handler = RefreshLog()
    logger = logging.getLogger("liveinference")
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


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
        pytest.skip(reason=f"no Prism binary at {PRISM}; `make prism` builds it from the Go "
                    "module proxy")
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
