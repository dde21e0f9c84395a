"""Boot of a Python SDK worker in a PROCESS environment, started by a TaskManager.

Beam's Flink runner starts the environment's command with only `--id`, `--provision_endpoint`
(and sometimes `--semi_persist_dir`); Beam's container `boot` program, which normally turns
those into a running worker, is not in the pip package. This module does its part: it asks the
provision service for the pipeline options and the control and logging endpoints, sets the
environment `sdk_worker_main` reads, sends its own output to a log file in the TaskManager's
directory and replaces itself with `python -m apache_beam.runners.worker.sdk_worker_main`.

The worker runs the packages of the interpreter that runs this module (the project's venv on
this machine); staged artifacts (requirements, extra packages) are not installed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

__all__ = ["TASKMANAGER_DIR_ENV", "TASKMANAGER_ENV", "main", "worker_environment"]

TASKMANAGER_ENV = "LIVEINFERENCE_TASKMANAGER"
TASKMANAGER_DIR_ENV = "LIVEINFERENCE_TASKMANAGER_DIR"
_LOGGER = logging.getLogger(__name__)


def worker_environment(worker_id: str, provision_endpoint: str,
                       semi_persist_dir: str) -> Dict[str, str]:
    """The variables `sdk_worker_main` reads, from the provision service.

    Args:
        worker_id: the runner's id for this worker.
        provision_endpoint: the provision service's address ("localhost:PORT").
        semi_persist_dir: a directory the worker may keep files in.

    Returns:
        PIPELINE_OPTIONS, CONTROL/LOGGING(/STATUS)_API_SERVICE_DESCRIPTOR, WORKER_ID,
        RUNNER_CAPABILITIES and SEMI_PERSISTENT_DIRECTORY.

    Raises:
        grpc.RpcError: the provision service did not answer.
    """
    import grpc
    from google.protobuf import json_format, text_format

    from apache_beam.portability.api import beam_provision_api_pb2, beam_provision_api_pb2_grpc

    with grpc.insecure_channel(provision_endpoint) as channel:
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = beam_provision_api_pb2_grpc.ProvisionServiceStub(channel)
        info = stub.GetProvisionInfo(
            beam_provision_api_pb2.GetProvisionInfoRequest(),
            metadata=[("worker_id", worker_id)], timeout=60,
        ).info
    env = {
        "WORKER_ID": worker_id,
        "PIPELINE_OPTIONS": json_format.MessageToJson(info.pipeline_options),
        "CONTROL_API_SERVICE_DESCRIPTOR": text_format.MessageToString(info.control_endpoint),
        "LOGGING_API_SERVICE_DESCRIPTOR": text_format.MessageToString(info.logging_endpoint),
        "RUNNER_CAPABILITIES": " ".join(info.runner_capabilities),
        "SEMI_PERSISTENT_DIRECTORY": semi_persist_dir,
    }
    if info.HasField("status_endpoint"):
        env["STATUS_API_SERVICE_DESCRIPTOR"] = text_format.MessageToString(info.status_endpoint)
    return env


def main(argv: Optional[List[str]] = None) -> None:
    """Starts one SDK worker; never returns (the process becomes the worker).

    Args:
        argv: the runner's arguments (`--id`, `--provision_endpoint`, `--semi_persist_dir`).
    """
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--id", required=True)
    parser.add_argument("--provision_endpoint", required=True)
    parser.add_argument("--semi_persist_dir", default="")
    args, _ = parser.parse_known_args(argv)
    home = Path(os.environ.get(TASKMANAGER_DIR_ENV, tempfile.gettempdir()))
    log = home / "workers" / f"worker-{args.id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    semi_persist = args.semi_persist_dir or tempfile.mkdtemp(prefix=f"worker-{args.id}-")
    env = dict(os.environ)
    env.update(worker_environment(args.id, args.provision_endpoint, semi_persist))
    _LOGGER.info("worker %s of %s (TMPDIR %s) starts sdk_worker_main", args.id,
                 os.environ.get(TASKMANAGER_ENV, "?"), tempfile.gettempdir())
    os.execve(sys.executable,
              [sys.executable, "-m", "apache_beam.runners.worker.sdk_worker_main"], env)


if __name__ == "__main__":
    main()
