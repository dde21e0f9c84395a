"""A PROCESS environment's boot command hands its worker to the service's spare, whose imports
are done (warm_boot), refuses malformed requests, and boots cold when there is no service."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import List

import apache_beam as beam
import pytest

from conftest import process_environment
from liveinference.testing import wait_until
from liveinference_expansion.boot import write_boot_command
from liveinference_expansion.warm_boot import WarmBoots
from liveinference_expansion.worker_pool import private_directory

NOT_LOOPBACK = "--provision_endpoint=example.com:1"


def _spares() -> List[int]:
    """This process's live children that are warm_boot spares."""
    return _children_spares(os.getpid())


def _children_spares(parent: int) -> List[int]:
    """The live children of `parent` that are warm_boot spares."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (int(stat[1]) == parent and stat[0] != "Z"
                and b"liveinference_expansion.warm_boot" in command):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def warm(tmp_path):
    """A WarmBoots in a private directory, and the boot command that uses it."""
    boots = WarmBoots(private_directory(str(tmp_path / "private")))
    socket_path = boots.start()
    yield boots, write_boot_command(str(tmp_path / "private"), handoff_socket=socket_path)
    boots.close()


def _boot(command: str, worker_id: str, tmp_path: Path) -> tuple[int, str]:
    """Runs the boot command with an endpoint it must refuse; its status and standard error."""
    errors = tmp_path / f"{worker_id}.err"
    with open(errors, "w") as stream:
        status = subprocess.run([command, f"--id={worker_id}", NOT_LOOPBACK],
                                stdin=subprocess.DEVNULL, stdout=stream, stderr=stream,
                                timeout=120).returncode
    return status, errors.read_text()


def test_the_worker_runs_in_the_spare_started_before_the_runner_asked(warm, tmp_path):
    boots, command = warm
    (spare,) = _spares()
    status, errors = _boot(command, "w1", tmp_path)
    # The spare ran the boot, which refused the endpoint on the runner's standard error.
    assert status == 2
    assert "worker w1 not started" in errors and "example.com:1" in errors
    wait_until(lambda: not _alive(spare), 30, "the spare that took the worker to end")
    wait_until(lambda: len(_spares()) == 1, 60, "a new spare")
    assert _spares() != [spare]


def test_without_the_service_the_boot_command_boots_cold(warm, tmp_path):
    boots, command = warm
    boots.close()
    assert not Path(boots.socket_path).exists()
    status, errors = _boot(command, "w2", tmp_path)
    assert status == 2
    assert "worker w2 not started" in errors
    assert _spares() == []


def test_a_malformed_request_is_refused_and_the_spare_serves_the_next_caller(warm, tmp_path):
    boots, command = warm
    (spare,) = _spares()
    for message, streams in ((b"print('code')", [0, 1, 2]),
                             (json.dumps({"argv": ["--id=x"], "cwd": "/", "tmpdir": ""}).encode(),
                              [0]),
                             (json.dumps({"argv": "--id=x", "cwd": "/", "tmpdir": ""}).encode(),
                              [0, 1, 2])):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as caller:
            caller.settimeout(120)
            caller.connect(boots.socket_path)
            socket.send_fds(caller, [message], streams)
            assert caller.recv(100) == b"", message
    assert _spares() == [spare]
    status, errors = _boot(command, "w3", tmp_path)
    assert status == 2 and "worker w3 not started" in errors
    wait_until(lambda: not _alive(spare), 30, "the spare that took the worker to end")


def _pid(element: int) -> int:
    return os.getpid()


@pytest.mark.slow
def test_a_runner_started_worker_is_the_spare(prism, warm, tmp_path):
    boots, command = warm
    (spare,) = _spares()
    options = process_environment(prism.address, command)
    out = tmp_path / "pids.txt"
    with beam.Pipeline(options=options) as pipeline:
        _ = (pipeline | beam.Create([1, 2, 3]) | beam.Map(_pid)
             | beam.io.WriteToText(str(out), shard_name_template=""))
    assert {int(line) for line in out.read_text().split()} == {spare}


def test_a_spare_ends_by_itself_when_its_service_dies_without_stopping_it(tmp_path):
    """A service killed with SIGKILL cannot stop its spare: the spare notices and ends."""
    script = (
        "import sys, time\n"
        "from liveinference_expansion.warm_boot import WarmBoots\n"
        "from liveinference_expansion.worker_pool import private_directory\n"
        f"WarmBoots(private_directory({str(tmp_path / 'private')!r})).start()\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    service = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert service.stdout is not None and service.stdout.readline().strip() == "started"
        spare = wait_until(lambda: _children_spares(service.pid), 60, "the service's spare")[0]
    finally:
        service.kill()
        service.wait()
    wait_until(lambda: not _alive(spare), 60, "the orphaned spare to end")
