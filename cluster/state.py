"""The state file of a running cluster (pids, ports, paths), and checks on its processes.

`python -m cluster.flink start` writes it; `stop` reads it to find what to end. A pid is
trusted only while its command line still names what we started (pids are reused), so a stale
file never leads to signalling someone else's process.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from examples.xlang_runtime import CACHE

__all__ = [
    "CLUSTER_ENV",
    "DEFAULT_ROOT",
    "ClusterState",
    "ProcessRecord",
    "alive",
    "end_process",
    "marked_processes",
]

# LIVEINFERENCE_FLINK_CLUSTER_ROOT runs a second cluster beside the default one.
DEFAULT_ROOT = Path(os.environ.get("LIVEINFERENCE_FLINK_CLUSTER_ROOT", CACHE / "flink-cluster"))
# Every process the cluster starts (and so every SDK worker) carries this in its environment.
CLUSTER_ENV = "LIVEINFERENCE_FLINK_CLUSTER"


@dataclass
class ProcessRecord:
    """One started process: its role ("jobmanager", "tm-1", "jobserver"), pid and log file."""

    role: str
    pid: int
    log: str
    marker: str

    def running(self) -> bool:
        """Whether the pid is alive and still runs the command we started."""
        return alive(self.pid, self.marker)


@dataclass
class ClusterState:
    """What `stop` and the tests need to know about a running cluster.

    Attributes:
        cluster_id: a random id, also in every process's environment (`CLUSTER_ENV`).
        root: the cluster's directory.
        rest_port: the JobManager's REST port (`--flink-master=localhost:REST_PORT`).
        job_endpoint: Beam's job server ("localhost:PORT").
        worker_command: the PROCESS environment's boot command for Python pipelines.
        ports: every port, by name.
        processes: the JobManager, TaskManagers and job server.
        started_seconds: how long `start` took.
    """

    cluster_id: str
    root: str
    rest_port: int
    job_endpoint: str
    worker_command: str
    ports: Dict[str, int] = field(default_factory=dict)
    processes: List[ProcessRecord] = field(default_factory=list)
    started_seconds: float = 0.0

    @staticmethod
    def path(root: Path) -> Path:
        """Where the state file of a cluster under `root` lives."""
        return root / "state.json"

    def save(self) -> None:
        """Writes the state file atomically."""
        target = self.path(Path(self.root))
        partial = target.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(self), indent=2))
        os.replace(partial, target)

    @classmethod
    def load(cls, root: Path) -> Optional["ClusterState"]:
        """Reads the state file under `root`; None when there is none."""
        try:
            raw = json.loads(cls.path(root).read_text())
        except FileNotFoundError:
            return None
        raw["processes"] = [ProcessRecord(**record) for record in raw["processes"]]
        return cls(**raw)

    def process(self, role: str) -> ProcessRecord:
        """The record of `role`.

        Raises:
            KeyError: no process has that role.
        """
        for record in self.processes:
            if record.role == role:
                return record
        raise KeyError(f"no process {role!r} in {self.path(Path(self.root))}")

    def taskmanagers(self) -> List[ProcessRecord]:
        """The TaskManagers' records, in order."""
        return [record for record in self.processes if record.role.startswith("tm-")]

    def environment_config(self) -> str:
        """`--environment_config` for a Python pipeline with `--environment_type=PROCESS`."""
        return json.dumps({"command": self.worker_command})


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int, marker: str) -> bool:
    """Whether `pid` runs and its command line contains `marker` (not a reused pid)."""
    return marker in _cmdline(pid) and _state(pid) not in ("Z", "")


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def marked_processes(cluster_id: str) -> List[int]:
    """Pids of live processes whose environment carries this cluster's id.

    These include SDK workers a killed TaskManager left behind.
    """
    needle = f"{CLUSTER_ENV}={cluster_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and _state(int(entry.name)) not in ("Z", ""):
            found.append(int(entry.name))
    return found


def end_process(pid: int, grace_seconds: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `grace_seconds`; returns once the pid is gone (or a zombie)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if _gone_within(pid, grace_seconds):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _gone_within(pid, 10.0)


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _state(pid) not in ("Z", ""):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True
