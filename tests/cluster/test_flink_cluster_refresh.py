"""Refresh on a real Flink session cluster: every worker of both TaskManagers swaps models.

A streaming Python pipeline (parallelism 2, PROCESS workers beside each TaskManager) watches
a model directory; the test drops a new model once both TaskManagers predict, a corrupt one
once every worker serves it, then another good one, each step waiting on what the workers
wrote, never on the clock.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Dict, List, Set, Tuple

import apache_beam as beam
import pytest
from apache_beam.runners.runner import PipelineState

from cluster.observe import read_records
from cluster.pipelines import StreamSpec, cluster_options, refresh_pipeline
from liveinference.testing import wait_until

TASKMANAGERS = {"tm-1", "tm-2"}
Worker = Tuple[str, int]

pytestmark = pytest.mark.slow


def _predictions(out: Path) -> List[dict]:
    return read_records(str(out / "predictions"))


def _versions_by_worker(out: Path) -> Dict[Worker, List[int]]:
    """Each worker's predicted labels (= model versions) in the order it made them."""
    served: Dict[Worker, List[int]] = {}
    for record in sorted(_predictions(out), key=lambda r: r["time"]):
        served.setdefault((record["taskmanager"], record["pid"]), []).append(record["inference"])
    return served


def _every_worker_serves(out: Path, version: int) -> bool:
    served = _versions_by_worker(out)
    return {tm for tm, _ in served} == TASKMANAGERS and all(
        version in versions for versions in served.values()
    )


def _rejected_on(out: Path, name: str) -> Set[str]:
    return {
        record["taskmanager"] for record in read_records(str(out / "failed_model_loads"))
        if record["model_id"].endswith(name)
    }


def _write_corrupt(path: Path) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(b"not a pickle")
    os.replace(partial, path)


def test_every_worker_of_both_taskmanagers_swaps_and_rejects_a_corrupt_version(
    flink_cluster, model_writer, tmp_path
):
    models, out = tmp_path / "models", tmp_path / "out"
    watched = models / "watched"
    watched.mkdir(parents=True)
    model_writer(models / "v1.pkl", 1)
    spec = StreamSpec(start=time.time() + 5, rows=600, interval=0.1)
    pipeline = beam.Pipeline(options=cluster_options(flink_cluster))
    refresh_pipeline(pipeline, spec, str(models / "v1.pkl"), str(watched / "*.pkl"), str(out))
    result = pipeline.run()
    try:
        wait_until(lambda: _every_worker_serves(out, 1), 180, "both TaskManagers predicting with v1")
        model_writer(watched / "v2.pkl", 2)
        wait_until(lambda: _every_worker_serves(out, 2), 60, "every worker serving v2")
        _write_corrupt(watched / "v3.pkl")
        wait_until(lambda: _rejected_on(out, "v3.pkl") == TASKMANAGERS, 60,
                   "both TaskManagers rejecting the corrupt v3")
        model_writer(watched / "v4.pkl", 4)
        wait_until(lambda: _every_worker_serves(out, 4), 60, "every worker serving v4")
        assert result.wait_until_finish() == PipelineState.DONE
    finally:
        if result.state not in (PipelineState.DONE, PipelineState.FAILED,
                                PipelineState.CANCELLED):
            result.cancel()

    predictions = _predictions(out)
    assert read_records(str(out / "failed_inferences")) == []
    rows = sorted(int(record["example"][0]) for record in predictions)
    assert rows == list(range(spec.rows)), "every input is predicted exactly once"

    served = _versions_by_worker(out)
    assert {tm for tm, _ in served} == TASKMANAGERS
    for worker, versions in served.items():
        assert versions == sorted(versions), f"{worker} went back to an older model: {versions}"
        assert set(versions) <= {1, 2, 4} and versions[-1] == 4, (worker, set(versions))

    root = Path(flink_cluster.root)
    tmpdirs = {(r["taskmanager"], r["tmpdir"]) for r in predictions}
    assert tmpdirs == {(tm, str(root / tm / "tmp")) for tm in TASKMANAGERS}

    loads = read_records(str(out / "failed_model_loads"))
    assert {Path(r["model_id"]).name for r in loads} == {"v3.pkl"}
    assert {r["stage"] for r in loads} == {"load_model"}
