"""A Python worker pool that only the service's own user can reach, starting workers by argv.

Beam's process-mode pool (`BeamFnExternalWorkerPoolServicer`) listens on TCP, starts an SDK
worker for any caller, and pastes `control_endpoint.url` into `python -c` source, so one
StartWorker call with a quote in the URL runs code. `PrivateWorkerPool` instead:

- listens on a Unix domain socket inside a fresh directory of mode 0700 owned by the service
  user (checked), so only that user and root can connect; no TCP port at all. The runner gets
  `unix:///.../workers.sock` as the EXTERNAL environment's address (Prism's Go gRPC and the
  Flink job server's Java gRPC both dial `unix:` targets);
- refuses a StartWorker whose worker id or endpoints are malformed or not on loopback
  (`check_start_request`), naming the field;
- starts each worker as `python -m liveinference_expansion.sdk_worker --worker-id ID
  --control-endpoint HOST:PORT`, an argument vector: no request field is ever part of source;
  the process is started ahead of the request with its imports done (`warm_workers`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
from typing import Dict, Optional

import grpc
from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc
from apache_beam.utils import thread_pool_executor

from liveinference_expansion.warm_workers import WarmWorkers, child_environment

__all__ = ["PrivateWorkerPool", "check_endpoint", "check_start_request", "private_directory"]

_LOGGER = logging.getLogger(__name__)

_LOOPBACK_ENDPOINT = re.compile(
    r"(?:localhost|127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\]):(?P<port>\d{1,5})"
)
_WORKER_ID = re.compile(r"[A-Za-z0-9_.:@()\[\]-]{1,256}")
_SOCKET_NAME = "workers.sock"


def check_endpoint(url: str, what: str) -> None:
    """Accepts only `localhost:PORT`, `127.x.y.z:PORT` or `[::1]:PORT`.

    Args:
        url: The endpoint as a runner sent it.
        what: The field, named in the error ("control_endpoint").

    Raises:
        ValueError: naming the field and the value when it is anything else.
    """
    match = _LOOPBACK_ENDPOINT.fullmatch(url)
    if not match or not 0 < int(match.group("port")) < 65536:
        raise ValueError(
            f"{what} {url!r} is not a loopback host:port (localhost, 127.x.y.z or [::1] with a "
            "port 1-65535); workers talk only to a runner on this machine"
        )


def check_start_request(request: beam_fn_api_pb2.StartWorkerRequest) -> None:
    """Checks a StartWorker request field by field before anything is started.

    Args:
        request: The request from the runner.

    Raises:
        ValueError: naming the first malformed field (worker id, or an endpoint that is not
            a loopback host:port; the control endpoint is required, the others may be empty).
    """
    if not _WORKER_ID.fullmatch(request.worker_id):
        raise ValueError(f"worker_id {request.worker_id!r} is not 1-256 characters of letters, "
                         "digits and _.:@()[]-")
    check_endpoint(request.control_endpoint.url, "control_endpoint")
    for what in ("logging_endpoint", "artifact_endpoint", "provision_endpoint"):
        url = getattr(request, what).url
        if url:
            check_endpoint(url, what)


def private_directory(path: Optional[str] = None) -> str:
    """Makes (or checks) a directory that only the current user can enter.

    Args:
        path: A directory to use; made with mode 0700 if missing. None makes a fresh one under
            the system temp dir.

    Returns:
        The directory's absolute path.

    Raises:
        PermissionError: if it is a symlink, not owned by the current user, or open to others.
    """
    if path is None:
        path = tempfile.mkdtemp(prefix="liveinference-pool-")
    else:
        path = os.path.abspath(path)
        os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise PermissionError(
            f"worker pool directory {path!r} must be a real directory owned by uid "
            f"{os.geteuid()} with mode 0700 (it is uid {info.st_uid}, mode "
            f"{stat.S_IMODE(info.st_mode):o}); remove it or name another one"
        )
    return path


class _Servicer(beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolServicer):
    def __init__(self, environment: Dict[str, str]) -> None:
        self.workers = WarmWorkers(environment)
        self._lock = threading.Lock()
        self.processes: Dict[str, subprocess.Popen] = {}

    def StartWorker(self, request: beam_fn_api_pb2.StartWorkerRequest,
                    context: grpc.ServicerContext) -> beam_fn_api_pb2.StartWorkerResponse:
        try:
            check_start_request(request)
        except ValueError as error:
            _LOGGER.warning("refused StartWorker: %s", error)
            return beam_fn_api_pb2.StartWorkerResponse(error=f"refused: {error}")
        _LOGGER.info("Starting worker %s for %s", request.worker_id,
                     request.control_endpoint.url)
        try:
            process = self.workers.start(request.worker_id, request.control_endpoint.url)
        except OSError as error:
            _LOGGER.error("cannot start worker %s: %s", request.worker_id, error)
            return beam_fn_api_pb2.StartWorkerResponse(
                error=f"cannot start worker {request.worker_id}: {error}")
        with self._lock:
            self.processes[request.worker_id] = process
        return beam_fn_api_pb2.StartWorkerResponse()

    def StopWorker(self, request: beam_fn_api_pb2.StopWorkerRequest,
                   context: grpc.ServicerContext) -> beam_fn_api_pb2.StopWorkerResponse:
        with self._lock:
            process = self.processes.pop(request.worker_id, None)
        if process is not None:
            _stop(process)
        return beam_fn_api_pb2.StopWorkerResponse()

    def reap(self) -> None:
        with self._lock:
            ended = [(worker_id, process) for worker_id, process in self.processes.items()
                     if process.poll() is not None]
            for worker_id, _ in ended:
                del self.processes[worker_id]
        for worker_id, process in ended:
            _LOGGER.info("SDK worker %s ended with %s", worker_id, process.returncode)


def _stop(process: subprocess.Popen, timeout: float = 5.0) -> None:
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class PrivateWorkerPool:
    """The pool: `start()` returns its `unix://` address, `stop()` stops it and its workers.

    Args:
        directory: Where to put the socket (made 0700 if missing, refused if open to others);
            None makes a fresh private directory, removed again by `stop()`.
    """

    def __init__(self, directory: Optional[str] = None) -> None:
        self._requested_directory = directory
        self._directory: Optional[str] = None
        self._server: Optional[grpc.Server] = None
        self._servicer: Optional[_Servicer] = None
        self._stopped = threading.Event()

    def start(self) -> str:
        """Starts listening.

        Returns:
            The address for the EXTERNAL environment, `unix:///<directory>/workers.sock`.

        Raises:
            PermissionError: if the directory is not private to this user.
            OSError: if the socket cannot be bound.
        """
        self._directory = private_directory(self._requested_directory)
        socket_path = os.path.join(self._directory, _SOCKET_NAME)
        if os.path.lexists(socket_path):
            os.unlink(socket_path)
        self._servicer = _Servicer(child_environment())
        server = grpc.server(
            thread_pool_executor.shared_unbounded_instance(),
            options=[("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0)],
        )
        beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(self._servicer, server)
        if server.add_insecure_port(f"unix://{socket_path}") == 0:
            raise OSError(f"cannot listen on the Unix socket {socket_path}")
        server.start()
        os.chmod(socket_path, 0o600)
        self._servicer.workers.prepare()
        self._server = server
        threading.Thread(target=self._reap, name="reap-workers", daemon=True).start()
        return f"unix://{socket_path}"

    def _reap(self) -> None:
        """Waits for workers that ended by themselves (their job finished)."""
        while not self._stopped.wait(timeout=5.0):
            if self._servicer is not None:
                self._servicer.reap()

    def stop(self, grace: float = 2.0) -> None:
        """Stops listening, stops the workers still running and removes a directory it made."""
        self._stopped.set()
        if self._server is not None:
            self._server.stop(grace).wait()
        if self._servicer is not None:
            self._servicer.workers.close()
            for process in list(self._servicer.processes.values()):
                _stop(process)
        if self._directory and self._requested_directory is None:
            shutil.rmtree(self._directory, ignore_errors=True)
