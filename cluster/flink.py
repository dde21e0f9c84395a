"""Start, inspect and stop the local Flink session cluster (`python -m cluster.flink ...`).

The command line: `python -m cluster.flink start|stop|status`.

`start` launches a JobManager (StandaloneSessionClusterEntrypoint), N TaskManagers
(TaskManagerRunner) and Beam's FlinkJobServerDriver submitting to them, each a JVM of its own
in its own session (they outlive the command) and directory, waits until every TaskManager
has registered and the job server listens, and writes the state file (`cluster.state`).
`stop` ends them, and any SDK worker a killed TaskManager left behind. A Python pipeline then
runs on the cluster with
`--runner=PortableRunner --job_endpoint=<job_endpoint> --environment_type=PROCESS
--environment_config=<state.environment_config()>`: each TaskManager starts its workers with
`python -m liveinference_expansion.boot --log-dir workers`; they inherit the TaskManager's
`TMPDIR` and working directory, so each writes its temp files and log in its TaskManager's.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

from cluster import config, jvm
from cluster.state import CLUSTER_ENV, DEFAULT_ROOT, ClusterState, ProcessRecord, end_process
from cluster.state import marked_processes
from examples.xlang_runtime import ROOT
from liveinference_expansion.boot import write_boot_command

__all__ = [
    "cancel_jobs", "failovers", "job_ids", "kill_taskmanager", "latest_checkpoint", "main",
    "registered_taskmanagers", "restart_taskmanager", "start", "status", "stop",
]

_LOGGER = logging.getLogger(__name__)
_JOB_SERVER_HEAP = "-Xmx768m"


def registered_taskmanagers(rest_port: int) -> List[str]:
    """The resource ids of the TaskManagers registered with the JobManager (REST API).

    Returns:
        The ids, or an empty list while the REST endpoint does not answer.
    """
    try:
        url = f"http://localhost:{rest_port}/taskmanagers"
        with urllib.request.urlopen(url, timeout=5) as reply:
            body = json.load(reply)
    except OSError:
        return []
    return sorted(tm["id"] for tm in body.get("taskmanagers", []))


def latest_checkpoint(rest_port: int) -> float:
    """Unix time of the newest completed checkpoint of any running job; 0.0 if none."""
    try:
        with urllib.request.urlopen(f"http://localhost:{rest_port}/jobs", timeout=5) as reply:
            jobs = json.load(reply).get("jobs", [])
        latest = 0.0
        for job in jobs:
            if job.get("status") != "RUNNING":
                continue
            url = f"http://localhost:{rest_port}/jobs/{job['id']}/checkpoints"
            with urllib.request.urlopen(url, timeout=5) as reply:
                completed = (json.load(reply).get("latest") or {}).get("completed") or {}
            latest = max(latest, completed.get("latest_ack_timestamp", 0) / 1000.0)
    except OSError:
        return 0.0
    return latest


def _rest(rest_port: int, path: str, method: str = "GET") -> dict:
    request = urllib.request.Request(f"http://localhost:{rest_port}{path}", method=method)
    with urllib.request.urlopen(request, timeout=10) as reply:
        body = reply.read()
    return json.loads(body) if body else {}


def job_ids(rest_port: int) -> Set[str]:
    """The ids of every job the cluster knows, running or ended."""
    return {job["jid"] for job in _rest(rest_port, "/jobs/overview").get("jobs", [])}


def cancel_jobs(rest_port: int, jids: Iterable[str], timeout: float = 60) -> None:
    """Cancels the cluster's jobs `jids` that still run, and waits until they have ended.

    Beam's job server, asked to cancel a job it submitted to a remote cluster, only stops
    its own client; the Flink job runs on. This cancels it through Flink's REST API.

    Raises:
        TimeoutError: a job had not ended within `timeout` seconds.
    """
    ended = ("CANCELED", "FINISHED", "FAILED")
    running = [jid for jid in jids if _rest(rest_port, f"/jobs/{jid}").get("state") not in ended]
    for jid in running:
        _rest(rest_port, f"/jobs/{jid}?mode=cancel", method="PATCH")
    deadline = time.monotonic() + timeout
    for jid in running:
        while _rest(rest_port, f"/jobs/{jid}").get("state") not in ended:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Flink job {jid} still runs {timeout:.0f}s after it was "
                                   "cancelled; see the JobManager's log")
            time.sleep(0.5)
        _LOGGER.info("cancelled Flink job %s", jid)


def failovers(rest_port: int, jids: Iterable[str]) -> List[str]:
    """Why the jobs `jids` failed or restarted: one line per entry of Flink's exception history.

    Returns:
        "<job> <task> on <TaskManager>: <first line of the exception>" lines; empty if none.
    """
    lines = []
    for jid in jids:
        history = _rest(rest_port, f"/jobs/{jid}/exceptions").get("exceptionHistory") or {}
        for entry in history.get("entries", []):
            first = (entry.get("stacktrace") or "").strip().splitlines()[:1] or ["?"]
            lines.append(f"{jid} {entry.get('taskName')} on {entry.get('taskManagerId')}: "
                         f"{first[0]}")
    return lines


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


# Popen objects of the processes this interpreter started, by pid: until a child has called
# exec, /proc shows our own command line, so during start liveness comes from poll().
_STARTED: Dict[int, subprocess.Popen] = {}


def _launch(role: str, command: List[str], log: Path, env: Dict[str, str],
            marker: str, append: bool = False) -> ProcessRecord:
    with open(log, "ab" if append else "wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=log.parent, start_new_session=True,
        )
    _STARTED[process.pid] = process
    _LOGGER.info("started %s (pid %d), log %s", role, process.pid, log)
    return ProcessRecord(role, process.pid, str(log), marker)


def _base_env(cluster_id: str) -> Dict[str, str]:
    env = dict(os.environ)
    env[CLUSTER_ENV] = cluster_id
    # The caller's PYTHONPATH comes first, so a run can put another copy of the package ahead.
    paths = [str(ROOT), str(ROOT / "python"), str(ROOT / "expansion")]
    env["PYTHONPATH"] = os.pathsep.join([p for p in [env.get("PYTHONPATH")] if p] + paths)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def _flink_process(role: str, directory: Path, cluster_id: str, append: bool = False,
                   flags: Optional[Tuple[List[str], List[str]]] = None) -> ProcessRecord:
    """Launches the JobManager ("jobmanager") or a TaskManager ("tm-N") from `directory`/conf."""
    conf_dir = directory / "conf"
    kind = "jobmanager" if role == "jobmanager" else "taskmanager"
    jvm_flags, dynamic = flags or jvm.memory_flags(kind, conf_dir)
    marker = f"-Dliveinference.role={role}@{cluster_id}"
    env = _base_env(cluster_id)
    args = ["--configDir", str(conf_dir), *dynamic]
    if kind == "jobmanager":
        command = jvm.java_command(jvm.JOBMANAGER_MAIN, [*jvm_flags, marker],
                                   [*args, "--executionMode", "cluster"])
    else:
        env.update({"TMPDIR": str(directory / "tmp"), config.TASKMANAGER_ENV: role})
        command = jvm.java_command(jvm.TASKMANAGER_MAIN, [*jvm_flags, marker], args)
    return _launch(role, command, directory / f"{kind}.log", env, marker, append)


def _start_processes(layout: config.ClusterLayout, confs: Dict[str, Path],
                     cluster_id: str) -> List[ProcessRecord]:
    roles = ["jobmanager", *(tm.name for tm in layout.taskmanagers)]
    with concurrent.futures.ThreadPoolExecutor(len(roles)) as pool:
        flags = list(pool.map(
            lambda role: jvm.memory_flags("jobmanager" if role == "jobmanager" else "taskmanager",
                                          confs[role]),
            roles,
        ))
    records = [_flink_process(role, confs[role].parent, cluster_id, flags=role_flags)
               for role, role_flags in zip(roles, flags)]
    env = _base_env(cluster_id)
    marker = f"-Dliveinference.role=jobserver@{cluster_id}"
    command = jvm.java_command(jvm.JOB_SERVER_MAIN, [_JOB_SERVER_HEAP, marker], [
        "--job-host=localhost", f"--job-port={layout.job_port}",
        f"--artifact-port={layout.artifact_port}", f"--expansion-port={layout.expansion_port}",
        f"--flink-master=localhost:{layout.rest_port}", f"--flink-conf-dir={confs['jobmanager']}",
    ])
    records.append(_launch("jobserver", command, layout.root / "jobserver.log", env, marker))
    return records


def _wait_until_up(state: ClusterState, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    job_port = int(state.job_endpoint.rsplit(":", 1)[1])
    while time.monotonic() < deadline:
        dead = [record for record in state.processes
                if _STARTED[record.pid].poll() is not None]
        if dead:
            raise RuntimeError(
                f"{dead[0].role} exited during start; see {dead[0].log}"
            )
        if len(registered_taskmanagers(state.rest_port)) == expected and _listening(job_port):
            return
        time.sleep(0.25)
    raise TimeoutError(
        f"the cluster was not up within {timeout:.0f}s (TaskManagers registered: "
        f"{registered_taskmanagers(state.rest_port)}, job server listening: "
        f"{_listening(job_port)}); see the logs under {state.root}"
    )


def start(root: Path = DEFAULT_ROOT, taskmanagers: int = 2, timeout: float = 180,
          slots: int = 2) -> ClusterState:
    """Starts a cluster under `root`, or returns the one already running there.

    Args:
        root: the cluster's directory (state file, configuration, logs, temp files).
        taskmanagers: how many TaskManagers.
        slots: task slots per TaskManager.
        timeout: seconds to wait for every TaskManager to register and the job server.

    Returns:
        The running cluster's state.

    Raises:
        FileNotFoundError: `make flink-jobserver` has not run.
        RuntimeError, TimeoutError: a process exited or the cluster did not come up; whatever
            was started is stopped again, and the message names the log to read.
    """
    existing = ClusterState.load(root)
    if existing is not None:
        if all(record.running() for record in existing.processes):
            _LOGGER.info("a cluster already runs under %s (job server %s)", root,
                         existing.job_endpoint)
            return existing
        _LOGGER.info("clearing a cluster under %s whose processes are gone", root)
        stop(root)
    began = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    layout = config.plan(root, taskmanagers, slots)
    confs = config.write_flink_conf(layout)
    cluster_id = uuid.uuid4().hex[:12]
    ports = {name: value for name, value in vars(layout).items() if name.endswith("_port")}
    for tm in layout.taskmanagers:
        ports.update({f"{tm.name}_rpc_port": tm.rpc_port, f"{tm.name}_data_port": tm.data_port,
                      f"{tm.name}_metrics_port": tm.metrics_port})
    state = ClusterState(cluster_id, str(root), layout.rest_port, f"localhost:{layout.job_port}",
                         write_boot_command(str(root), log_dir=config.WORKER_LOG_DIR), ports)
    try:
        state.processes = _start_processes(layout, confs, cluster_id)
        state.save()
        _wait_until_up(state, taskmanagers, timeout)
    except BaseException:
        stop(root)
        raise
    state.started_seconds = round(time.monotonic() - began, 2)
    state.save()
    _LOGGER.info("cluster up in %.1fs: Flink REST localhost:%d, job server %s",
                 state.started_seconds, state.rest_port, state.job_endpoint)
    return state


def stop(root: Path = DEFAULT_ROOT) -> bool:
    """Stops the cluster under `root` and the SDK workers it started, and removes its state.

    Returns:
        Whether there was a cluster to stop.
    """
    state = ClusterState.load(root)
    if state is None:
        return False
    for record in sorted(state.processes, key=lambda r: r.role != "jobserver"):
        if record.running():
            end_process(record.pid)
            _LOGGER.info("stopped %s (pid %d)", record.role, record.pid)
        if record.pid in _STARTED:
            _STARTED.pop(record.pid).wait(timeout=10)
    for pid in marked_processes(state.cluster_id):
        end_process(pid, grace_seconds=5)
        _LOGGER.info("stopped leftover process %d of the cluster", pid)
    ClusterState.path(root).unlink(missing_ok=True)
    for directory in root.glob("*/tmp"):
        shutil.rmtree(directory, ignore_errors=True)
    for directory in root.glob("*/blobs"):
        shutil.rmtree(directory, ignore_errors=True)
    return True


def kill_taskmanager(state: ClusterState, name: str) -> None:
    """SIGKILLs one TaskManager, as a crashed machine would vanish (no shutdown hooks).

    Returns once the process is gone.

    Raises:
        KeyError: no TaskManager of that name.
        RuntimeError: it is not running.
    """
    record = state.process(name)
    if not record.running():
        raise RuntimeError(f"TaskManager {name} (pid {record.pid}) is not running")
    os.kill(record.pid, signal.SIGKILL)
    if record.pid in _STARTED:
        _STARTED.pop(record.pid).wait(timeout=30)
    else:
        end_process(record.pid, grace_seconds=30)
    _LOGGER.info("killed TaskManager %s (pid %d)", name, record.pid)


def restart_taskmanager(state: ClusterState, name: str) -> ClusterState:
    """Starts a stopped or killed TaskManager again with its own ports and directories.

    As a supervisor would after a crash; the JobManager takes it back once it registers. The
    state file is updated with the new pid.

    Args:
        state: the running cluster.
        name: the TaskManager ("tm-2").

    Returns:
        The updated state.

    Raises:
        KeyError: no TaskManager of that name.
        RuntimeError: it still runs.
    """
    record = state.process(name)
    if record.running():
        raise RuntimeError(f"TaskManager {name} (pid {record.pid}) still runs; kill it first")
    if record.pid in _STARTED:
        _STARTED.pop(record.pid).wait(timeout=10)
    fresh = _flink_process(name, Path(state.root) / name, state.cluster_id, append=True)
    state.processes[state.processes.index(record)] = fresh
    state.save()
    return state


def status(root: Path = DEFAULT_ROOT) -> Optional[dict]:
    """The state of the cluster under `root` with each process's liveness, or None."""
    state = ClusterState.load(root)
    if state is None:
        return None
    return {
        "job_endpoint": state.job_endpoint,
        "rest_port": state.rest_port,
        "environment_config": state.environment_config(),
        "processes": {r.role: {"pid": r.pid, "running": r.running(), "log": r.log}
                      for r in state.processes},
        "registered_taskmanagers": registered_taskmanagers(state.rest_port),
        "started_seconds": state.started_seconds,
    }


def main(argv: Optional[List[str]] = None) -> int:
    """The command line: `start [--taskmanagers N]`, `stop`, `status` (JSON on stdout).

    Returns:
        The exit status: 0, or 1 when `status` finds no cluster.
    """
    parser = argparse.ArgumentParser(prog="python -m cluster.flink", description=__doc__)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--taskmanagers", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "start":
        start(args.root, args.taskmanagers)
        return 0
    if args.command == "stop":
        if not stop(args.root):
            _LOGGER.info("no cluster runs under %s", args.root)
        return 0
    found = status(args.root)
    sys.stdout.write(json.dumps(found, indent=2) + "\n")
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
