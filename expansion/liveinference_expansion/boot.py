"""The boot program of a PROCESS environment: the runner itself starts each Python worker.

Runners start a PROCESS environment's command with only `--id=ID --provision_endpoint=HOST:PORT`
(Flink adds `--semi_persist_dir`); Beam's container `boot` program, which normally turns those
into a running worker, is not in the pip package. This module does its part: it asks the
provision service for the control, logging and status endpoints, the runner's capabilities and
the pipeline options, checks that the endpoints are on loopback, and runs Beam's
`sdk_worker_main` in this process.

It is the one boot program of the project: `liveinference serve --process-workers` runs it in
a warm spare (`warm_boot`; cold, in the runner's process tree, when no spare answers), and a
Flink session cluster starts it beside each TaskManager:

    python -m liveinference_expansion.boot --tmpdir /cluster/tm-1/tmp \
        --log-dir /cluster/tm-1/workers --id=... --provision_endpoint=localhost:PORT

`--tmpdir` gives the worker that temp directory (else it keeps the runner's `TMPDIR`, which a
TaskManager started with its own `TMPDIR` passes on), `--log-dir` sends the worker's output to
`worker-ID.log` there (else to the runner, which logs it); a relative folder is taken from the
worker's working directory, which is the runner's (a TaskManager started in its own directory
gives its workers their own log folder that way). `write_boot_command` writes the
executable a PROCESS environment names: a two-line shell script that runs this module (or,
given a spare's socket, `boot_handoff.py`) with the current interpreter, its import path and
these options.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import sys
import tempfile
from typing import Dict, List, Optional

import grpc
from apache_beam.portability.api.org.apache.beam.model.fn_execution.v1 import (
    beam_provision_api_pb2,
    beam_provision_api_pb2_grpc,
)
from google.protobuf import json_format, text_format

from liveinference_expansion.worker_pool import check_endpoint

__all__ = ["main", "worker_environment", "write_boot_command"]

_LOGGER = logging.getLogger(__name__)
_UNSAFE_IN_FILE_NAMES = re.compile(r"[^A-Za-z0-9_.@-]")


def write_boot_command(directory: str, *, tmpdir: Optional[str] = None,
                       log_dir: Optional[str] = None,
                       handoff_socket: Optional[str] = None) -> str:
    """Writes `<directory>/boot`, which runs this module with the current interpreter.

    Args:
        directory: A directory private to the service's user (see `private_directory`), or
            a TaskManager's own directory.
        tmpdir: The workers' temp directory (`--tmpdir`); None keeps the runner's.
        log_dir: Where each worker writes `worker-ID.log` (`--log-dir`); None: to the runner.
        handoff_socket: The socket of a `warm_boot.WarmBoots`: the script first offers the
            worker to its spare (`boot_handoff.py`), which boots it with these options, and
            boots it cold only when no spare takes it.

    The workers import what this process imports: its `sys.path` entries, made absolute (an
    entry relative to this process's directory means nothing in the runner's), come first on
    their PYTHONPATH, followed by the PYTHONPATH the runner passes on.

    Returns:
        The script's path, executable by its owner only.
    """
    path = os.path.join(directory, "boot")
    found = (os.path.abspath(entry) for entry in sys.path)
    # Entries naming no file (import hooks' markers) are left to the site setup that adds them.
    entries = dict.fromkeys(entry for entry in found if os.path.exists(entry))
    python_path = shlex.quote(os.pathsep.join(entries))
    options = "".join(f" {flag} {shlex.quote(value)}"
                      for flag, value in (("--tmpdir", tmpdir), ("--log-dir", log_dir)) if value)
    python = shlex.quote(sys.executable)
    if handoff_socket:
        client = shlex.quote(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                          "boot_handoff.py"))
        start = f"{python} -I -S {client} {shlex.quote(handoff_socket)}"
    else:
        start = f"{python} -m liveinference_expansion.boot"
    with open(path, "w") as file:
        file.write(f"#!/bin/sh\nPYTHONPATH={python_path}${{PYTHONPATH:+{os.pathsep}$PYTHONPATH}} "
                   f'exec {start}{options} "$@"\n')
    os.chmod(path, 0o700)
    return path


def _provision(endpoint: str, worker_id: str) -> beam_provision_api_pb2.ProvisionInfo:
    with grpc.insecure_channel(endpoint) as channel:
        stub = beam_provision_api_pb2_grpc.ProvisionServiceStub(channel)
        response = stub.GetProvisionInfo(beam_provision_api_pb2.GetProvisionInfoRequest(),
                                         metadata=[("worker_id", worker_id)], timeout=60,
                                         wait_for_ready=True)
    return response.info


def worker_environment(worker_id: str, info: beam_provision_api_pb2.ProvisionInfo,
                       semi_persist_dir: str) -> Dict[str, str]:
    """The variables `sdk_worker_main` reads, from the provision service's answer.

    Args:
        worker_id: The runner's id for this worker.
        info: What the provision service answered for it.
        semi_persist_dir: A directory the worker may keep files in.

    Returns:
        WORKER_ID, PIPELINE_OPTIONS, CONTROL_API_SERVICE_DESCRIPTOR, RUNNER_CAPABILITIES,
        SEMI_PERSISTENT_DIRECTORY, and the logging and status descriptors the runner offers.

    Raises:
        ValueError: if the control, logging or status endpoint is not a loopback host:port.
    """
    check_endpoint(info.control_endpoint.url, "control_endpoint")
    env = {
        "WORKER_ID": worker_id,
        "PIPELINE_OPTIONS": json.dumps(json_format.MessageToDict(info.pipeline_options)),
        "CONTROL_API_SERVICE_DESCRIPTOR": text_format.MessageToString(info.control_endpoint),
        "RUNNER_CAPABILITIES": " ".join(info.runner_capabilities),
        "SEMI_PERSISTENT_DIRECTORY": semi_persist_dir,
    }
    for field, variable in (("logging_endpoint", "LOGGING_API_SERVICE_DESCRIPTOR"),
                            ("status_endpoint", "STATUS_API_SERVICE_DESCRIPTOR")):
        descriptor = getattr(info, field)
        if descriptor.url:
            check_endpoint(descriptor.url, field)
            env[variable] = text_format.MessageToString(descriptor)
    return env


def _file_name_part(worker_id: str) -> str:
    return _UNSAFE_IN_FILE_NAMES.sub("_", worker_id)[:100]


def _send_output_to(log_dir: str, worker_id: str) -> str:
    os.makedirs(log_dir, mode=0o700, exist_ok=True)
    path = os.path.join(log_dir, f"worker-{_file_name_part(worker_id)}.log")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)
    return path


def main(argv: Optional[List[str]] = None) -> int:
    """Provisions and runs one SDK worker until the runner closes its control channel.

    Args:
        argv: `[--tmpdir DIR] [--log-dir DIR] --id=ID --provision_endpoint=HOST:PORT
            [--semi_persist_dir DIR]` (other flags runners add are ignored); defaults to
            `sys.argv[1:]`.

    Returns:
        The exit status: 2 when an endpoint is not a loopback host:port.
    """
    parser = argparse.ArgumentParser(prog="liveinference_expansion.boot")
    parser.add_argument("--id", required=True)
    parser.add_argument("--provision_endpoint", required=True)
    parser.add_argument("--semi_persist_dir", default="")
    parser.add_argument("--tmpdir", default="")
    parser.add_argument("--log-dir", dest="log_dir", default="")
    args, _ = parser.parse_known_args(argv)
    # Prism's PROCESS environment passes `--id='ID'`, quotes included, without a shell.
    if len(args.id) > 1 and args.id[0] == args.id[-1] == "'":
        args.id = args.id[1:-1]
    if args.log_dir:
        _send_output_to(args.log_dir, args.id)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.tmpdir:
        os.makedirs(args.tmpdir, exist_ok=True)
        os.environ["TMPDIR"] = args.tmpdir
        tempfile.tempdir = args.tmpdir
    try:
        check_endpoint(args.provision_endpoint, "--provision_endpoint")
        info = _provision(args.provision_endpoint, args.id)
        env = worker_environment(
            args.id, info,
            args.semi_persist_dir or tempfile.mkdtemp(prefix=f"worker-{_file_name_part(args.id)}-"))
    except ValueError as error:
        _LOGGER.error("worker %s not started: %s", args.id, error)
        return 2
    os.environ.update(env)
    _LOGGER.info("worker %s: control at %s, temp dir %s", args.id, info.control_endpoint.url,
                 tempfile.gettempdir())
    # Imported only now: Beam's WorkerIdInterceptor reads WORKER_ID when its module is
    # imported, and the state and logging channels send that id to the runner.
    from apache_beam.runners.worker import sdk_worker_main
    from apache_beam.runners.worker.worker_id_interceptor import WorkerIdInterceptor

    # A warm spare imported Beam before it knew the id: set it as the import would have.
    WorkerIdInterceptor._worker_id = args.id
    sdk_worker_main.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
