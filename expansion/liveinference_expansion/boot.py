"""The boot program of a PROCESS environment: the runner itself starts each Python worker.

Runners start a PROCESS environment's command with only `--id=ID --provision_endpoint=HOST:PORT`
(Beam's container `boot` program is not in the pip package). This module asks the provision
service for the control and logging endpoints and the pipeline options, checks that they are on
loopback, and runs Beam's `sdk_worker_main` with them. No pool listens anywhere: the worker runs
as the runner's user, in the runner's process tree.

`write_boot_command` writes the executable the environment names (a two-line shell script that
runs this module with the service's own interpreter) into the service's private directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from typing import List, Optional

import grpc
from apache_beam.portability.api.org.apache.beam.model.fn_execution.v1 import (
    beam_provision_api_pb2,
    beam_provision_api_pb2_grpc,
)
from apache_beam.runners.worker import sdk_worker_main
from google.protobuf import json_format, text_format

from liveinference_expansion.worker_pool import check_endpoint

__all__ = ["main", "write_boot_command"]

_LOGGER = logging.getLogger(__name__)


def write_boot_command(directory: str) -> str:
    """Writes `<directory>/boot`, which runs this module with the current interpreter.

    Args:
        directory: A directory private to the service's user (see `private_directory`).

    Returns:
        The script's path, executable by its owner only.
    """
    path = os.path.join(directory, "boot")
    python_path = shlex.quote(os.pathsep.join(entry for entry in sys.path if entry))
    with open(path, "w") as file:
        file.write(f"#!/bin/sh\nPYTHONPATH={python_path} exec {shlex.quote(sys.executable)} "
                   '-m liveinference_expansion.boot "$@"\n')
    os.chmod(path, 0o700)
    return path


def _provision(endpoint: str, worker_id: str) -> beam_provision_api_pb2.ProvisionInfo:
    with grpc.insecure_channel(endpoint) as channel:
        stub = beam_provision_api_pb2_grpc.ProvisionServiceStub(channel)
        response = stub.GetProvisionInfo(beam_provision_api_pb2.GetProvisionInfoRequest(),
                                         metadata=[("worker_id", worker_id)], timeout=60)
    return response.info


def main(argv: Optional[List[str]] = None) -> int:
    """Provisions and runs one SDK worker until the runner closes its control channel.

    Args:
        argv: `--id=ID --provision_endpoint=HOST:PORT` (other flags runners add are ignored);
            defaults to `sys.argv[1:]`.

    Returns:
        The exit status: 2 when an endpoint is not a loopback host:port.
    """
    parser = argparse.ArgumentParser(prog="liveinference_expansion.boot")
    parser.add_argument("--id", required=True)
    parser.add_argument("--provision_endpoint", required=True)
    args, _ = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        check_endpoint(args.provision_endpoint, "--provision_endpoint")
        info = _provision(args.provision_endpoint, args.id)
        check_endpoint(info.control_endpoint.url, "control_endpoint")
        if info.logging_endpoint.url:
            check_endpoint(info.logging_endpoint.url, "logging_endpoint")
    except ValueError as error:
        _LOGGER.error("worker %s not started: %s", args.id, error)
        return 2
    os.environ.update({
        "WORKER_ID": args.id,
        "CONTROL_API_SERVICE_DESCRIPTOR": text_format.MessageToString(info.control_endpoint),
        "PIPELINE_OPTIONS": json.dumps(json_format.MessageToDict(info.pipeline_options)),
    })
    if info.logging_endpoint.url:
        os.environ["LOGGING_API_SERVICE_DESCRIPTOR"] = text_format.MessageToString(
            info.logging_endpoint)
    _LOGGER.info("worker %s: control at %s", args.id, info.control_endpoint.url)
    sdk_worker_main.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
