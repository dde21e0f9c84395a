"""Fixtures for the tests on a real Flink session cluster (one JobManager, two TaskManagers).

The cluster is the one `make flink-cluster` started, if one runs; otherwise the session starts
one and stops it at the end. It needs the Flink class path from `make flink-jobserver`; without
it the tests skip (or, under `make test`, where LIVEINFERENCE_REQUIRE_XLANG=1, fail).
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from cluster import flink
from cluster.state import DEFAULT_ROOT, ClusterState
from examples import xlang_runtime


def _require_flink() -> None:
    missing = xlang_runtime.missing_pieces("flink")
    if missing:
        message = "missing " + "; ".join(missing)
        if os.environ.get("LIVEINFERENCE_REQUIRE_XLANG") == "1":
            pytest.fail(message)
        pytest.skip(reason=message)


@pytest.fixture(scope="session")
def flink_cluster() -> Iterator[ClusterState]:
    """The running cluster; started here (and stopped after the session) if none runs."""
    _require_flink()
    running = ClusterState.load(DEFAULT_ROOT)
    if running is not None and all(record.running() for record in running.processes):
        yield running
        return
    state = flink.start(DEFAULT_ROOT)
    try:
        yield state
    finally:
        flink.stop(DEFAULT_ROOT)


@pytest.fixture(scope="module")
def fresh_flink_cluster() -> Iterator[ClusterState]:
    """A cluster of its own (another root), started for one module and stopped after it.

    For the Java job: the TaskManagers' heap grows with the jobs they have run, and on a
    cluster that had run others its TaskManagers ran out of heap or stalled in garbage
    collection, missed heartbeats, and the job failed over.
    """
    _require_flink()
    root = DEFAULT_ROOT.with_name(DEFAULT_ROOT.name + "-fresh")
    state = flink.start(root)
    try:
        yield state
    finally:
        flink.stop(root)
