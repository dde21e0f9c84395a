"""Refresh on a real Flink session cluster: every worker of both TaskManagers swaps models.

A streaming Python pipeline (parallelism 2, PROCESS workers beside each TaskManager) serves
models kept on an S3-compatible object store (moto's server, reached through Beam's S3
filesystem; `cluster.scenarios.refresh_scenario`): v2 is offered once both TaskManagers
predict with v1, a corrupt v3 once every worker serves v2, then v4; each step waits on what
the workers wrote, never on the clock. In watch mode every worker polls the store; in event
mode each version is announced through the pipeline's own source and relayed to every worker
by the event channel, on the store too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.analysis import row_counts, versions_by_worker
from cluster.objectstore import ObjectStore
from cluster.places import S3Place
from cluster.scenarios import refresh_scenario

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def object_store():
    """moto's S3 server for this module's runs."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed; `make venv`")
    with ObjectStore() as store:
        yield store


@pytest.mark.parametrize("mode", ["watch", "event"])
def test_every_worker_of_both_taskmanagers_swaps_and_rejects_a_corrupt_version(
    flink_cluster, object_store, tmp_path, mode
):
    place = S3Place(object_store, f"{mode}-run")
    run = refresh_scenario(flink_cluster, tmp_path, place, mode)

    counts = row_counts(run.rows_in, run.predictions(), run.failed())
    assert counts == {"rows_in": run.rows_in, "rows_out": run.rows_in, "dead_letters": 0,
                      "lost": 0, "duplicates": 0}, "inputs = outputs + dead letters"

    predictions = run.predictions(up_to_cutoff=False)
    served = versions_by_worker(predictions)
    assert {tm for tm, _ in served} == {"tm-1", "tm-2"}
    for worker, versions in served.items():
        assert versions == sorted(versions), f"{worker} went back to an older model: {versions}"
        assert set(versions) <= {1, 2, 4} and versions[-1] == 4, (worker, set(versions))
    assert {r["model_id"] for r in predictions if r["inference"] == 4} == {
        place.uri("watched/v4.pkl" if mode == "watch" else "dropped/v4.pkl")}

    root = Path(flink_cluster.root)
    tmpdirs = {(r["taskmanager"], r["tmpdir"]) for r in predictions}
    assert tmpdirs == {(tm, str(root / tm / "tmp")) for tm in ("tm-1", "tm-2")}

    loads = run.records("failed_model_loads")
    assert {Path(r["model_id"]).name for r in loads} == {"v3.pkl"}
    assert {r["stage"] for r in loads} == {"load_model"}
    assert {r["taskmanager"] for r in loads} == {"tm-1", "tm-2"}
    if mode == "event":
        messages = [key for key in place.keys("channel/") if key.endswith(".json")]
        assert len(messages) == 3, f"one channel message per announced version: {messages}"
