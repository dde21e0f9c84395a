"""Ports, directories and the Flink configuration of each process of the local cluster.

Every port is chosen here and written down (nothing listens on a port Flink picked at random),
everything binds to loopback, and each TaskManager gets its own resource id, `io.tmp.dirs`,
blob store and ports, so that two TaskManagers on one machine share nothing local by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

from examples.xlang_runtime import free_port

__all__ = [
    "TASKMANAGER_ENV",
    "WORKER_LOG_DIR",
    "ClusterLayout",
    "TaskManagerLayout",
    "free_port",
    "plan",
    "write_flink_conf",
]

# A TaskManager and the SDK workers it starts carry its name in this variable.
TASKMANAGER_ENV = "LIVEINFERENCE_TASKMANAGER"
# The workers' log folder, relative to their working directory: their TaskManager's directory.
WORKER_LOG_DIR = "workers"

# Settings every process shares; RUNNERS.md ("Measured in December") says why each matters.
_COMMON: Dict[str, str] = {
    "jobmanager.rpc.address": "localhost",
    "jobmanager.bind-host": "127.0.0.1",
    "rest.address": "localhost",
    "rest.bind-address": "127.0.0.1",
    "taskmanager.host": "localhost",
    "taskmanager.bind-host": "127.0.0.1",
    # With child-first, Beam classes load twice (cluster class path and the job's jars).
    "classloader.resolve-order": "parent-first",
    # Else both parallel tasks may land on one TaskManager.
    "cluster.evenly-spread-out-slots": "true",
    # The job server uploads its whole class path (~150 MB) with every job.
    "blob.service.cleanup.interval": "60",
    "jobmanager.memory.process.size": "1024m",
    # With 1024m (about 350 MB of heap), and again in a whole-suite run with 1536m (about 800 MB),
    # a TaskManager running the Java pipeline's 13 tasks ran out of heap, stopped answering
    # heartbeats, and the job failed over.
    "taskmanager.memory.process.size": "2560m",
    "taskmanager.memory.managed.size": "32m",
    "parallelism.default": "2",
    # A killed TaskManager is noticed at once anyway (its RPC and data connections drop). With
    # a 10 s timeout, TaskManagers stalled by garbage collection on this shared machine were
    # declared dead: the job failed over and, without checkpoints, replayed its sources from
    # the start, so every row came out twice. 60 s is Flink's default (50 s) and a margin.
    "heartbeat.interval": "2000",
    "heartbeat.timeout": "60000",
    "restart-strategy.type": "fixed-delay",
    "restart-strategy.fixed-delay.attempts": "20",
    "restart-strategy.fixed-delay.delay": "2 s",
}


@dataclass(frozen=True)
class TaskManagerLayout:
    """One TaskManager's identity, ports and directories.

    Attributes:
        name: its resource id ("tm-1"), also the name of its directory.
        directory: its own directory: configuration, logs, temp files of its SDK workers.
        rpc_port, data_port, metrics_port: the ports it listens on (loopback).
    """

    name: str
    directory: Path
    rpc_port: int
    data_port: int
    metrics_port: int

    @property
    def tmp_dir(self) -> Path:
        """The TaskManager's `io.tmp.dirs` and its SDK workers' TMPDIR."""
        return self.directory / "tmp"


@dataclass(frozen=True)
class ClusterLayout:
    """Where everything of one cluster lives and which ports it uses.

    Attributes:
        root: the cluster's directory (the state file sits there too).
        rest_port, rpc_port, blob_port, metrics_port: the JobManager's ports.
        job_port, artifact_port, expansion_port: Beam's job server's ports.
        taskmanagers: one layout per TaskManager.
        slots: task slots per TaskManager.
    """

    root: Path
    rest_port: int
    rpc_port: int
    blob_port: int
    metrics_port: int
    job_port: int
    artifact_port: int
    expansion_port: int
    taskmanagers: List[TaskManagerLayout] = field(default_factory=list)
    slots: int = 2

    @property
    def jobmanager_dir(self) -> Path:
        """The JobManager's directory (configuration, log, blobs, checkpoints)."""
        return self.root / "jobmanager"

    @property
    def checkpoint_dir(self) -> Path:
        """Where the JobManager writes checkpoints."""
        return self.root / "checkpoints"


def plan(root: Path, taskmanagers: int = 2, slots: int = 2) -> ClusterLayout:
    """Chooses free ports and directories for a cluster under `root`.

    Args:
        root: the cluster's directory; created by `write_flink_conf`.
        taskmanagers: how many TaskManagers (at least 1).
        slots: task slots per TaskManager (one makes a job of parallelism N use N
            TaskManagers, whatever the scheduler prefers).

    Returns:
        The layout, nothing started or written yet.

    Raises:
        ValueError: fewer than one TaskManager or slot.
    """
    if taskmanagers < 1 or slots < 1:
        raise ValueError("a cluster needs at least one TaskManager with at least one slot, got "
                         f"{taskmanagers} with {slots}")
    ports = iter(_distinct_ports(7 + 3 * taskmanagers))
    layout = ClusterLayout(
        root, rest_port=next(ports), rpc_port=next(ports), blob_port=next(ports),
        metrics_port=next(ports), job_port=next(ports), artifact_port=next(ports),
        expansion_port=next(ports), slots=slots,
    )
    for number in range(1, taskmanagers + 1):
        name = f"tm-{number}"
        layout.taskmanagers.append(
            TaskManagerLayout(name, root / name, next(ports), next(ports), next(ports))
        )
    return layout


def _distinct_ports(count: int) -> List[int]:
    ports: List[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _jobmanager_conf(layout: ClusterLayout) -> Dict[str, str]:
    return {
        **_COMMON,
        "jobmanager.rpc.port": str(layout.rpc_port),
        "rest.port": str(layout.rest_port),
        "blob.server.port": str(layout.blob_port),
        "metrics.internal.query-service.port": str(layout.metrics_port),
        "taskmanager.numberOfTaskSlots": str(layout.slots),
        "io.tmp.dirs": str(layout.jobmanager_dir / "tmp"),
        "blob.storage.directory": str(layout.jobmanager_dir / "blobs"),
        "web.tmpdir": str(layout.jobmanager_dir / "tmp"),
        "state.checkpoints.dir": layout.checkpoint_dir.as_uri(),
    }


def _taskmanager_conf(layout: ClusterLayout, tm: TaskManagerLayout) -> Dict[str, str]:
    return {
        **_jobmanager_conf(layout),
        "taskmanager.resource-id": tm.name,
        "taskmanager.rpc.port": str(tm.rpc_port),
        "taskmanager.data.port": str(tm.data_port),
        "metrics.internal.query-service.port": str(tm.metrics_port),
        "io.tmp.dirs": str(tm.tmp_dir),
        "blob.storage.directory": str(tm.directory / "blobs"),
    }


def write_flink_conf(layout: ClusterLayout) -> Dict[str, Path]:
    """Writes one Flink configuration directory per process and makes their directories.

    Args:
        layout: from `plan`.

    Returns:
        {"jobmanager": conf dir, "tm-1": conf dir, ...}.
    """
    confs = {"jobmanager": (layout.jobmanager_dir, _jobmanager_conf(layout))}
    for tm in layout.taskmanagers:
        confs[tm.name] = (tm.directory, _taskmanager_conf(layout, tm))
    written = {}
    for name, (directory, settings) in confs.items():
        conf_dir = directory / "conf"
        for sub in (conf_dir, directory / "tmp", directory / "blobs", directory / WORKER_LOG_DIR):
            sub.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}: {value}" for key, value in sorted(settings.items())]
        (conf_dir / "flink-conf.yaml").write_text("\n".join(lines) + "\n")
        written[name] = conf_dir
    layout.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    return written
