"""Refresh scenarios on the running cluster, driven by what the workers write, never the clock.

`StreamRun` submits the refresh pipeline (`cluster.pipelines`) with an open-ended stream and
lets a driver act on events: every worker serving a version, a rejection seen on every
TaskManager, a checkpoint completed. `finish()` picks a cut-off (now), waits until every row
emitted up to it has come out (predicted or dead-lettered), then cancels the job, so inputs
and outputs are compared over a known set of rows however late the job started.

`refresh_scenario` (every worker swaps; a corrupt version is rejected on all) and
`fault_scenario` (a TaskManager is killed while a new version loads) are what the tests assert
on and the benchmark measures.
"""

from __future__ import annotations

import logging
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set

import apache_beam as beam
from apache_beam.runners.runner import PipelineState

from cluster import flink
from cluster.analysis import Worker, every_worker_serves, rejected_on, versions_by_worker
from cluster.models import SlowToLoad, constant_classifier, load_markers
from cluster.observe import read_records
from cluster.pipelines import StreamSpec, cluster_options, refresh_pipeline
from cluster.places import LocalPlace, Place
from cluster.state import ClusterState
from liveinference.testing import wait_until

__all__ = ["CHECKPOINT_FLAGS", "Run", "StreamRun", "fault_scenario", "refresh_scenario",
           "restarted_workers", "wait_for"]

_LOGGER = logging.getLogger(__name__)

# Checkpointing every second, each bundle finished before the barrier. Without the second flag
# Beam's Flink operators finish a bundle that is open at a checkpoint inside the snapshot, with
# its outputs held in operator state until the operator's next bundle starts; the stage that
# splits PeriodicImpulse's one element never gets another element, timer or watermark, so
# when a checkpoint caught its one bundle (a race, more likely on a loaded machine) the
# stream's restriction was never emitted and the job ran without producing a row.
CHECKPOINT_FLAGS = ("--checkpointing_interval=1000", "--finish_bundle_before_checkpointing")
_TERMINAL = (PipelineState.DONE, PipelineState.FAILED, PipelineState.CANCELLED)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """`liveinference.testing.wait_until` checking every `every` seconds, twice a second by
    default (conditions here read records from files and Flink's REST API); returns the
    condition's true value.

    Raises:
        TimeoutError: naming `what`, if it does not hold within `timeout` seconds.
    """
    return wait_until(condition, timeout, what, every=every)


@dataclass
class Run:
    """What a finished run left: its records, its rows in, and when each event happened.

    Attributes:
        out: the records' directory (`cluster.pipelines.OUTPUTS` below it).
        rows_in: the rows emitted up to the cut-off (ids 0 .. rows_in - 1).
        events: Unix time of each event by name ("v2 dropped", "tm-2 killed", "cut-off", ...).
        taskmanagers: the TaskManagers of the cluster.
    """

    out: Path
    rows_in: int
    events: Dict[str, float] = field(default_factory=dict)
    taskmanagers: Set[str] = field(default_factory=set)

    def records(self, name: str) -> List[dict]:
        """The records of output `name` ("predictions", "failed_inferences", ...)."""
        return read_records(str(self.out / name))

    def predictions(self, up_to_cutoff: bool = True) -> List[dict]:
        """Prediction records, by default only of rows emitted up to the cut-off."""
        return [r for r in self.records("predictions")
                if not up_to_cutoff or int(r["example"][0]) < self.rows_in]

    def failed(self) -> List[dict]:
        """Inference dead letters of rows emitted up to the cut-off."""
        return [r for r in self.records("failed_inferences") if int(r["element"][0]) < self.rows_in]


class StreamRun:
    """A running refresh pipeline on the cluster; use as a context manager.

    Args:
        state: the running cluster.
        root: a local directory for markers and records (and models, without `place`).
        flags: more pipeline options, e.g. ["--checkpointing_interval=1000"].
        interval: seconds between rows.
        poll_seconds: how often each worker polls for new versions.
        parallelism: Flink's parallelism.
        place: where models, announcements and the channel go; default `root`/models.
        mode: "watch" (new versions dropped where workers poll) or "event" (announced
            through the pipeline's own source, relayed by the channel).
    """

    def __init__(self, state: ClusterState, root: Path, flags: Sequence[str] = (),
                 interval: float = 0.1, poll_seconds: float = 0.5, parallelism: int = 2,
                 place: Optional[Place] = None, mode: str = "watch") -> None:
        self.state = state
        self.place = place or LocalPlace(root / "models")
        self.mode = mode
        self.markers, self.out = root / "markers", root / "out"
        self.markers.mkdir(parents=True, exist_ok=True)
        self.taskmanagers = {record.role for record in state.taskmanagers()}
        self.events: Dict[str, float] = {}
        self.place.write("v1.pkl", pickle.dumps(constant_classifier(1)))
        # An upper bound of an hour; `finish()` cuts the run off long before.
        self.spec = StreamSpec(start=time.time() + 2, interval=interval, rows=int(3600 / interval))
        options = cluster_options(state, parallelism, [*flags, *self.place.flags()])
        self._pipeline = beam.Pipeline(options=options)
        self._jobs_before: Set[str] = set()
        refresh_pipeline(self._pipeline, self.spec, self.place, str(self.out), mode,
                         poll_seconds)
        self._result: Optional[Any] = None
        self._announced = 0

    def __enter__(self) -> "StreamRun":
        self._jobs_before = flink.job_ids(self.state.rest_port)
        self._result = self._pipeline.run()
        self.events["submitted"] = time.time()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.cancel()

    def cancel(self) -> None:
        """Cancels the job on the cluster unless it has ended; waits until it has."""
        if self._result is None or self._result.state in _TERMINAL:
            return
        ours = flink.job_ids(self.state.rest_port) - self._jobs_before
        flink.cancel_jobs(self.state.rest_port, ours)
        self._result.cancel()

    def predictions(self) -> List[dict]:
        """Every prediction record so far."""
        return read_records(str(self.out / "predictions"))

    def drop(self, name: str, model: Any) -> None:
        """Offers `model` as version file `name` (watched, or written and announced)."""
        self._offer(name, pickle.dumps(model))

    def drop_corrupt(self, name: str) -> None:
        """Offers bytes that are no pickle as version file `name`."""
        self._offer(name, b"not a pickle")

    def _offer(self, name: str, payload: bytes) -> None:
        if self.mode == "watch":
            self.place.write(f"watched/{name}", payload)
        else:
            uri = self.place.write(f"dropped/{name}", payload)
            self._announced += 1
            self.place.announce(self._announced, uri, name)
        self.events[f"{name} dropped"] = time.time()

    def wait_serving(self, version: int, timeout: float = 120, since: float = 0.0) -> None:
        """Waits until workers on every TaskManager predict and all have served `version`."""
        wait_for(lambda: every_worker_serves(self.predictions(), version, self.taskmanagers, since),
                 timeout, f"every worker on {sorted(self.taskmanagers)} serving v{version}")

    def wait_rejected(self, name: str, timeout: float = 60) -> None:
        """Waits until workers on every TaskManager have rejected model file `name`."""
        wait_for(lambda: rejected_on(read_records(str(self.out / "failed_model_loads")), name)
                 == self.taskmanagers, timeout, f"every TaskManager rejecting {name}")

    def finish(self, timeout: float = 180) -> Run:
        """Cuts the stream off now, waits for every row up to it to come out, cancels.

        Returns:
            The run. Rows still missing after `timeout` count as lost in its figures.
        """
        cutoff = time.time()
        self.events["cut-off"] = cutoff
        rows_in = self.spec.rows_until(cutoff)
        run = Run(self.out, rows_in, self.events, self.taskmanagers)

        def missing() -> int:
            seen = {int(r["example"][0]) for r in run.predictions()}
            seen |= {int(r["element"][0]) for r in run.failed()}
            return rows_in - len(seen)

        try:
            wait_for(lambda: missing() == 0, timeout, f"all {rows_in} rows up to the cut-off")
        except TimeoutError:
            _LOGGER.warning("%d of %d rows never came out", missing(), rows_in)
        self.cancel()
        return run


def restarted_workers(predictions: List[dict], since: float) -> Set[Worker]:
    """Workers whose first prediction came after `since`: those of a restarted job."""
    before = {(r["taskmanager"], r["pid"]) for r in predictions if r["time"] < since}
    return {(r["taskmanager"], r["pid"]) for r in predictions} - before


def refresh_scenario(state: ClusterState, root: Path, place: Optional[Place] = None,
                     mode: str = "watch") -> Run:
    """v1 on every worker; v2 dropped; a corrupt v3; v4. Each step waits for the last.

    Args:
        state: the running cluster.
        root: a local directory for markers and records.
        place: where models go (default: under `root`); see `StreamRun`.
        mode: "watch" or "event"; see `StreamRun`.
    """
    with StreamRun(state, root, place=place, mode=mode) as stream:
        stream.wait_serving(1, timeout=300)
        stream.drop("v2.pkl", constant_classifier(2))
        stream.wait_serving(2)
        stream.drop_corrupt("v3.pkl")
        stream.wait_rejected("v3.pkl")
        stream.drop("v4.pkl", constant_classifier(4))
        stream.wait_serving(4)
        return stream.finish()


def fault_scenario(state: ClusterState, root: Path, load_seconds: float = 5.0,
                   victim: str = "tm-2") -> Run:
    """v1, then v2 everywhere; v3 takes `load_seconds` to load and `victim` is SIGKILLed
    while its worker loads it (after a checkpoint completed), then started again.

    The job has checkpointing on; Flink restarts it from the last checkpoint. It also finishes
    each bundle before a checkpoint barrier (`CHECKPOINT_FLAGS`).
    """
    flags = list(CHECKPOINT_FLAGS)
    with StreamRun(state, root, flags) as stream:
        stream.wait_serving(1, timeout=300)
        stream.drop("v2.pkl", constant_classifier(2))
        stream.wait_serving(2)
        served_v2 = time.time()
        wait_for(lambda: flink.latest_checkpoint(state.rest_port) > served_v2, 120,
                 "a checkpoint completed after every worker served v2")
        stream.drop("v3.pkl", SlowToLoad(3, load_seconds, str(stream.markers)))
        wait_for(lambda: any(m.startswith(f"{victim}-")
                             for m in load_markers(stream.markers, "loading")),
                 60, f"{victim}'s worker loading v3")
        stream.events[f"{victim} killed"] = time.time()
        flink.kill_taskmanager(state, victim)
        flink.restart_taskmanager(state, victim)
        killed = stream.events[f"{victim} killed"]

        def restarted_serve_v3() -> bool:
            predictions = stream.predictions()
            restarted = restarted_workers(predictions, killed)
            served = versions_by_worker(predictions)
            return bool(restarted) and all(3 in served[worker] for worker in restarted)

        wait_for(restarted_serve_v3, 300, "the restarted job's workers serving v3")
        stream.events["restarted workers serve v3"] = time.time()
        run = stream.finish()
    wait_for(lambda: len(flink.registered_taskmanagers(state.rest_port)) == len(run.taskmanagers),
             120, f"{victim} registered again")
    return run
