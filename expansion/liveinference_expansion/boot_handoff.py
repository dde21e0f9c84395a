"""The boot command's first step: hand this worker to the service's warm spare, else boot cold.

A runner that starts Python workers itself (a PROCESS environment) runs the service's `boot`
script, which runs this file with `python -I -S` (standard library only, nothing imported
from the package, so it starts in tens of milliseconds):

    python -I -S boot_handoff.py SOCKET --id=ID --provision_endpoint=HOST:PORT ...

It connects to the Unix socket SOCKET of `liveinference serve --process-workers` (in the
service's private directory), sends its arguments, working directory and TMPDIR as JSON with
its standard input, output and error (SCM_RIGHTS), and waits. The spare process, whose imports
are done, answers with its pid, runs the boot on those arguments with those streams, and
answers with the exit status. This process stays the one the runner started: it passes the
runner's SIGTERM, SIGINT and SIGHUP on to the worker and exits with the worker's status.

When no spare answers (no socket, the service stopped, a refused or silent connection), it
replaces itself with the cold boot, `python -m liveinference_expansion.boot` with the same
arguments, so the runner always gets a worker.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from typing import NoReturn, TextIO

ANSWER_SECONDS = 60.0
_STREAMS = [0, 1, 2]


def _hand_over(path: str, args: list[str]) -> tuple[int, TextIO] | None:
    """Hands the worker to the spare; returns its pid and a reader of its answers, or None if
    no spare took it."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.settimeout(ANSWER_SECONDS)
        connection.connect(path)
        request = {"argv": args, "cwd": os.getcwd(), "tmpdir": os.environ.get("TMPDIR", "")}
        socket.send_fds(connection, [json.dumps(request).encode()], _STREAMS)
        reader = connection.makefile("r", encoding="utf-8")
        first = reader.readline()
    except (OSError, ValueError):
        connection.close()
        return None
    if not first.startswith("pid "):
        connection.close()
        return None
    connection.settimeout(None)
    return int(first.split()[1]), reader


def _boot_cold(args: list[str]) -> NoReturn:
    """Replaces this process with the cold boot (PYTHONPATH comes from the boot script)."""
    os.execv(sys.executable, [sys.executable, "-m", "liveinference_expansion.boot", *args])


def main(argv: list[str]) -> int:
    """Runs one worker for the runner; returns its exit status (replaced by a cold boot if no
    spare takes it)."""
    path, args = argv[0], argv[1:]
    taken = _hand_over(path, args)
    if taken is None:
        _boot_cold(args)
    pid, reader = taken

    def forward(signum: int, frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    last = reader.readline()
    if last.startswith("exit "):
        return int(last.split()[1])
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
