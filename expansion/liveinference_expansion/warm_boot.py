"""Warm PROCESS workers: the runner's boot command hands its worker to a spare started ahead.

Runners that start each Python worker themselves (a PROCESS environment: Beam's Flink job
server, which cannot dial the worker pool's Unix socket) used to start it cold, and every job
waited while it imported Beam's worker, liveinference and scikit-learn (about 3 CPU-s).
With `liveinference serve --process-workers`, `WarmBoots` keeps one spare process that has
done those imports and waits on a Unix socket in the service's private directory (mode 0700;
the socket 0600). The boot command the service hands out runs `boot_handoff.py`, which passes
its arguments and standard streams to the spare and stays the runner's process (see there).

The spare accepts a caller only when it runs as the service's user (SO_PEERCRED), reads the
request as data (JSON strings: the boot's arguments, working directory and TMPDIR; never
code) with exactly three descriptors, takes over those streams and runs `boot.main`, which
parses the arguments and checks every endpoint as a cold boot does. A refused request is
logged and the spare waits for the next one. Once a spare has taken a worker a new spare
starts in the background; if a spare ends without taking one, the service stops listening
and callers boot cold. Each job still gets a process of its own: only the imports were done
ahead of time.

The spare is `python -m liveinference_expansion.warm_boot FD PID MODULE...`, FD being the
listening socket it inherits and PID the service's.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from typing import List, Optional

from liveinference_expansion.warm_workers import child_environment, preloaded_modules

__all__ = ["SOCKET_NAME", "WarmBoots", "main"]

SOCKET_NAME = "spare.sock"
_LOGGER = logging.getLogger(__name__)
_BOOT_MODULES = ("liveinference_expansion.boot", "apache_beam.runners.worker.sdk_worker_main")
_STREAMS = 3
_MAX_REQUEST_BYTES = 64 * 1024
_MAX_ARGUMENTS = 32
_MAX_ARGUMENT_CHARS = 4096


class WarmBoots:
    """Keeps one spare boot process ready behind `<directory>/spare.sock`.

    Args:
        directory: The service's private directory (see `worker_pool.private_directory`).
    """

    def __init__(self, directory: str) -> None:
        self.socket_path = os.path.join(directory, SOCKET_NAME)
        self._environment = child_environment()
        self._lock = threading.Lock()
        self._listener: Optional[socket.socket] = None
        self._spare: Optional[subprocess.Popen] = None
        self._closed = False

    def start(self) -> str:
        """Listens on the socket and starts the first spare.

        Returns:
            The socket's path, for `boot.write_boot_command(..., handoff_socket=...)`.

        Raises:
            OSError: if the socket cannot be bound.
        """
        if os.path.lexists(self.socket_path):
            os.unlink(self.socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        os.chmod(self.socket_path, 0o600)
        listener.listen(16)
        self._listener = listener
        self._start_spare()
        return self.socket_path

    def _start_spare(self) -> None:
        with self._lock:
            if self._closed or self._listener is None:
                return
            descriptor = self._listener.fileno()
            spare = subprocess.Popen(
                [sys.executable, "-m", "liveinference_expansion.warm_boot", str(descriptor),
                 str(os.getpid()), *preloaded_modules(), *_BOOT_MODULES],
                env=self._environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                pass_fds=(descriptor,), text=True,
            )
            self._spare = spare
        threading.Thread(target=self._watch, args=(spare,), name="warm-boot",
                         daemon=True).start()

    def _watch(self, spare: subprocess.Popen) -> None:
        assert spare.stdout is not None
        taken = spare.stdout.readline().strip() == "taken"
        spare.stdout.close()
        if taken:
            self._start_spare()
        elif not self._closed:
            _LOGGER.error("the spare Python worker (pid %d) ended with status %s before taking "
                          "a worker; runners' workers now boot cold (see its log above)",
                          spare.pid, spare.wait())
            self._stop_listening()
        spare.wait()

    def _stop_listening(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
            if os.path.lexists(self.socket_path):
                os.unlink(self.socket_path)

    def close(self) -> None:
        """Stops listening and stops the spare; workers it handed out run until their jobs end."""
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
        self._stop_listening()
        if spare is not None and spare.poll() is None:
            spare.terminate()
            try:
                spare.wait(5.0)
            except subprocess.TimeoutExpired:
                spare.kill()
                spare.wait()


@dataclasses.dataclass(frozen=True)
class _Request:
    argv: List[str]
    cwd: str
    tmpdir: str
    streams: List[int]


def _caller_uid(connection: socket.socket) -> int:
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                        struct.calcsize("3i"))
    return struct.unpack("3i", credentials)[1]


def _parse(message: bytes, streams: List[int]) -> _Request:
    """The request's fields, checked to be plain strings of bounded size, and its streams.

    Raises:
        ValueError: naming what is malformed.
    """
    if len(message) >= _MAX_REQUEST_BYTES:
        raise ValueError(f"request of {len(message)} bytes or more")
    request = json.loads(message.decode("utf-8"))
    if not isinstance(request, dict):
        raise ValueError("request is not a JSON object")
    argv, cwd, tmpdir = request.get("argv"), request.get("cwd"), request.get("tmpdir")
    if (not isinstance(argv, list) or len(argv) > _MAX_ARGUMENTS
            or not all(isinstance(a, str) and len(a) <= _MAX_ARGUMENT_CHARS for a in argv)):
        raise ValueError(f"argv must be a list of at most {_MAX_ARGUMENTS} strings")
    if not isinstance(cwd, str) or not isinstance(tmpdir, str):
        raise ValueError("cwd and tmpdir must be strings")
    if len(streams) != _STREAMS:
        raise ValueError(f"{len(streams)} descriptors instead of {_STREAMS}")
    return _Request(argv, cwd, tmpdir, streams)


def _receive(connection: socket.socket) -> Optional[_Request]:
    """The caller's request, or None (logged) when it is refused."""
    uid = _caller_uid(connection)
    if uid != os.geteuid():
        _LOGGER.warning("refused a boot request from uid %d (the service runs as uid %d)",
                        uid, os.geteuid())
        return None
    connection.settimeout(10.0)
    try:
        message, streams, _, _ = socket.recv_fds(connection, _MAX_REQUEST_BYTES, _STREAMS)
    except OSError as error:
        _LOGGER.warning("refused a boot request: %s", error)
        return None
    try:
        return _parse(message, streams)
    except (ValueError, UnicodeDecodeError) as error:
        for stream in streams:
            os.close(stream)
        _LOGGER.warning("refused a malformed boot request: %s", error)
        return None


def _take_request(listener: socket.socket,
                  service: int) -> Optional[tuple[socket.socket, _Request]]:
    """The first acceptable caller and its request; None once the service (pid `service`) is
    no longer this process's parent."""
    listener.settimeout(1.0)
    while os.getppid() == service:
        try:
            connection, _ = listener.accept()
        except socket.timeout:
            continue
        request = _receive(connection)
        if request is not None:
            return connection, request
        connection.close()
    return None


def _end_when_caller_ends(connection: socket.socket, finished: threading.Event) -> None:
    """The runner killed the boot command (it cannot pass that on): end the worker too."""
    connection.recv(1)
    if not finished.is_set():
        os._exit(1)


def main(argv: Optional[List[str]] = None) -> int:
    """The spare: imports the given modules, then boots the worker the first caller asks for.

    Args:
        argv: `FD PID MODULE...`: FD the inherited listening socket, PID the service's (the
            parent may die while this process imports its package); defaults to
            `sys.argv[1:]`.

    Returns:
        The boot's exit status (2 when an endpoint is refused); 0 when the service ended
        (it stopped, or died without stopping its spare) before a caller came.
    """
    args = sys.argv[1:] if argv is None else argv
    listener, service = socket.socket(fileno=int(args[0])), int(args[1])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in args[2:]:
        importlib.import_module(name)
    taken = _take_request(listener, service)
    listener.close()
    if taken is None:
        return 0
    connection, request = taken
    print("taken", flush=True)
    for target, stream in enumerate(request.streams):
        os.dup2(stream, target)
        os.close(stream)
    connection.settimeout(None)
    connection.sendall(f"pid {os.getpid()}\n".encode())
    finished = threading.Event()
    threading.Thread(target=_end_when_caller_ends, args=(connection, finished),
                     name="boot-caller", daemon=True).start()
    if request.tmpdir:
        os.environ["TMPDIR"] = request.tmpdir
        tempfile.tempdir = None
    if os.path.isdir(request.cwd):
        os.chdir(request.cwd)
    from liveinference_expansion import boot

    status = boot.main(request.argv)
    finished.set()
    connection.sendall(f"exit {status}\n".encode())
    return status


if __name__ == "__main__":
    sys.exit(main())
