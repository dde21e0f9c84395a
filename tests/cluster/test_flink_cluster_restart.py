"""A TaskManager dies while a new model loads; Flink restarts the job from its checkpoint.

`cluster.scenarios.fault_scenario`: checkpointing on; every worker serves v1, then v2; v3
takes seconds to load, and TaskManager tm-2 is SIGKILLed while its worker loads it (after a
checkpoint completed), then started again as a supervisor would. The run is shared by the
tests below: after the restart every worker ends on v3, no row is lost (replayed duplicates
are counted), and — what the issue asks — no restarted worker goes back to the first model.

The job finishes each bundle before a checkpoint barrier (`cluster.scenarios.CHECKPOINT_FLAGS`
says why): without it, a checkpoint that caught the first bundle of the stage splitting the
stream's one element left the job running without a row (seen in 1 of 3 runs here).
"""

from __future__ import annotations

import logging

import pytest

from cluster.analysis import row_counts, versions_by_worker
from cluster.models import load_markers
from cluster.scenarios import Run, fault_scenario, restarted_workers

_LOG = logging.getLogger(__name__)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fault_run(flink_cluster, tmp_path_factory) -> Run:
    """The scenario, run once for this module's tests."""
    return fault_scenario(flink_cluster, tmp_path_factory.mktemp("faults"))


def _restarted(run: Run) -> set:
    return restarted_workers(run.predictions(up_to_cutoff=False), run.events["tm-2 killed"])


def test_after_a_taskmanager_dies_mid_load_every_worker_ends_on_the_newest_model(fault_run):
    restarted = _restarted(fault_run)
    assert restarted, "the job was not restarted on new workers"
    served = versions_by_worker(fault_run.predictions(up_to_cutoff=False))
    for worker in restarted:
        assert served[worker][-1] == 3, (worker, sorted(set(served[worker])))
    assert any(m.startswith("tm-2-")
               for m in load_markers(fault_run.out.parent / "markers", "loading"))


def test_nothing_is_lost_across_the_restart_and_duplicates_are_counted(fault_run):
    counts = row_counts(fault_run.rows_in, fault_run.predictions(), fault_run.failed())
    _LOG.info("rows across the restart: %s", counts)
    assert counts["lost"] == 0 and counts["dead_letters"] == 0, counts
    assert counts["rows_out"] == fault_run.rows_in, counts


def test_restarted_workers_never_serve_the_first_model_again(fault_run):
    served = versions_by_worker(fault_run.predictions(up_to_cutoff=False))
    assert all(1 not in served[worker] for worker in _restarted(fault_run)), {
        worker: sorted(set(served[worker])) for worker in _restarted(fault_run)}
