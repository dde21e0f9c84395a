"""A Java pipeline on the Flink session cluster swaps its Python model on both TaskManagers.

Java's ClassifyWithUpdates example (helper J's) is submitted to the cluster's job server
(parallelism 2, the cluster's default); its Python transform comes from an expansion service
started with `--process-workers`, so each TaskManager starts the Python workers itself with
the service's boot program. Row files stream in; once the workers of both TaskManagers
serve v1, an update message sent from the Java side names v2, and both TaskManagers' workers
swap to it. The workers' log lines reach each TaskManager's log (Beam's logging service), which
tells which TaskManager served what; no row is lost.

Once every row written has come out, the test cancels the job: on this runner a streaming job
whose watches had stopped had not ended 3 minutes later (the stage that ran the rows' Watch
was still in Flink's finish phase, Beam's `ExecutableStageDoFnOperator.flushData`), so the
program's own end is tested on Prism and Flink's local mode only.

It runs on a cluster of its own (`fresh_flink_cluster`). Every row comes out once: the job
must not fail over. (Rows came out twice when it did: the
cluster's heartbeat timeout was 10 s, a stall of this shared machine made the JobManager
drop a TaskManager, and the restarted job, which has no checkpoints, read every file again;
the TaskManagers also ran out of heap with 1024m in all; `cluster.config` says more.)
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
from pathlib import Path
from typing import List, Set

import pytest

from cluster import flink
from cluster.models import constant_classifier
from cluster.scenarios import wait_for
from examples import xlang_runtime

pytestmark = pytest.mark.slow
_LOG = logging.getLogger(__name__)

MAIN = "dev.liveinference.examples.ClassifyWithUpdates"
ROWS_PER_FILE = 4
IDLE_SECONDS = 30


class _Feed:
    """Writes row files (row ids in the first feature) and reads what came out."""

    def __init__(self, root: Path) -> None:
        self.inputs, self.updates = root / "in", root / "updates"
        self.inputs.mkdir()
        self.updates.mkdir()
        self.predictions, self.dead = root / "predictions.tsv", root / "dead.tsv"
        self.files = 0

    def _write(self, folder: Path, name: str, lines: List[str]) -> None:
        partial = folder / f".{name}.tmp"
        partial.write_text("".join(line + "\n" for line in lines))
        os.replace(partial, folder / name)

    def rows(self) -> None:
        """Writes the next file of ROWS_PER_FILE rows."""
        first = self.files * ROWS_PER_FILE
        self._write(self.inputs, f"part{self.files:04d}.csv",
                    [f"{row}.0,0.0,0.0,0.0" for row in range(first, first + ROWS_PER_FILE)])
        self.files += 1

    def update(self, name: str, message: dict) -> None:
        """Sends one update message from the Java side (a file its source watches)."""
        self._write(self.updates, name, [json.dumps(message)])

    def predicted(self) -> List[List[str]]:
        """(example, inference, model_id) of each prediction so far."""
        text = self.predictions.read_text() if self.predictions.exists() else ""
        return [line.split("\t") for line in text.splitlines()]

    def dead_letters(self) -> List[str]:
        return self.dead.read_text().splitlines() if self.dead.exists() else []


def _row_id(example: str) -> int:
    return int(float(example.strip("[]").split(",")[0]))


def _taskmanagers_logging(cluster, *parts: str) -> Set[str]:
    """The TaskManagers whose log holds a line with every one of `parts`."""
    found = set()
    for record in cluster.taskmanagers():
        text = Path(record.log).read_text(errors="replace")
        if any(all(part in line for part in parts) for line in text.splitlines()):
            found.add(record.role)
    return found


def test_a_java_pipeline_on_the_cluster_swaps_the_model_on_both_taskmanagers(
    fresh_flink_cluster, tmp_path
):
    missing = xlang_runtime.missing_pieces("java", "flink")
    if missing:
        pytest.skip(reason="missing " + "; ".join(missing))
    models = {}
    for version in (1, 2):
        models[version] = tmp_path / f"v{version}.pkl"
        models[version].write_bytes(pickle.dumps(constant_classifier(version)))
    feed = _Feed(tmp_path)
    feed.rows()
    both = {record.role for record in fresh_flink_cluster.taskmanagers()}
    with xlang_runtime.start_service(tmp_path, "--process-workers") as service:
        command = xlang_runtime.java_command(
            MAIN, f"--input={feed.inputs}/*.csv", f"--updates={feed.updates}/*.json",
            f"--model={models[1]}", f"--predictions={feed.predictions}",
            f"--deadLetters={feed.dead}", f"--expansionService={service.address}",
            f"--idleSeconds={IDLE_SECONDS}",
            *xlang_runtime.runner_args("flink", fresh_flink_cluster.job_endpoint),
        )
        log = tmp_path / "java.log"
        jobs_before = flink.job_ids(fresh_flink_cluster.rest_port)
        with open(log, "wb") as out:
            java = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            def streaming_until(condition):
                def check():
                    if java.poll() is not None:
                        raise AssertionError(f"the Java pipeline exited ({java.returncode}):\n"
                                             + log.read_text(errors="replace")[-3000:])
                    feed.rows()
                    return condition()
                return check

            wait_for(streaming_until(lambda: _taskmanagers_logging(
                fresh_flink_cluster, "loaded the first model", str(models[1])) == both),
                400, "both TaskManagers' workers serving v1", every=2)
            feed.update("1.json", {"model_path": str(models[2]), "model_name": "v2"})
            wait_for(streaming_until(lambda: _taskmanagers_logging(
                fresh_flink_cluster, "now serving", str(models[2])) == both),
                300, "both TaskManagers' workers serving v2", every=2)
            last = feed.files - 1
            wait_for(streaming_until(lambda: any(
                _row_id(example) >= last * ROWS_PER_FILE and model == str(models[2])
                for example, _, model in feed.predicted())),
                300, "rows written after the swap predicted by v2", every=2)
            written = set(range(feed.files * ROWS_PER_FILE))
            wait_for(lambda: written <= {_row_id(e) for e, _, _ in feed.predicted()}, 120,
                     f"all {len(written)} rows written predicted", every=2)
        finally:
            flink.cancel_jobs(fresh_flink_cluster.rest_port,
                              flink.job_ids(fresh_flink_cluster.rest_port) - jobs_before)
            if java.poll() is None:
                java.kill()
                java.wait()

    failed_over = flink.failovers(fresh_flink_cluster.rest_port,
                                  flink.job_ids(fresh_flink_cluster.rest_port) - jobs_before)
    assert not failed_over, "the job failed over; without checkpoints its sources start again:\n" \
        + "\n".join(failed_over)
    predicted = feed.predicted()
    ids = [_row_id(example) for example, _, _ in predicted]
    _LOG.info("%d rows written, %d predictions", feed.files * ROWS_PER_FILE, len(ids))
    assert set(ids) == set(range(feed.files * ROWS_PER_FILE)), "a row was lost"
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} rows came out twice"
    assert feed.dead_letters() == []
    assert {(int(inference), model) for _, inference, model in predicted} == {
        (1, str(models[1])), (2, str(models[2]))}
