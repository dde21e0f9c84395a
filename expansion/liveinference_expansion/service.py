"""The gRPC side: Beam's own expansion service, restricted to `ConfiguredRunInference`, and
a Python worker pool for portable runners.

Nothing here is hand-written protocol: `ExpansionServiceServicer` (as in Beam's
`expansion_service_main`) answers expansion requests for Beam's fully-qualified-named
transform URN, filtered to exactly `TRANSFORM_NAME`; `BeamFnExternalWorkerPoolServicer`
starts SDK workers as subprocesses when a runner asks for the EXTERNAL environment.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import threading
from typing import List, Optional

import grpc
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions
from apache_beam.portability.api import (
    beam_artifact_api_pb2_grpc,
    beam_expansion_api_pb2_grpc,
    beam_fn_api_pb2_grpc,
)
from apache_beam.runners.portability import artifact_service, expansion_service
from apache_beam.runners.worker import worker_pool_main
from apache_beam.transforms.fully_qualified_named_transform import FullyQualifiedNamedTransform
from apache_beam.utils import thread_pool_executor

from liveinference_expansion.policy import Policy, set_policy
from liveinference_expansion.transform import TRANSFORM_NAME

__all__ = ["ExpansionServer", "ServiceConfig"]

_LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """How to run the service.

    Attributes:
        host: The interface to listen on; loopback by default.
        port: The expansion port; 0 picks a free one.
        worker_pool: Run a Python worker pool (EXTERNAL environment) beside the service.
        worker_pool_port: The worker pool's port; 0 picks a free one.
        environment_type: The environment of the Python steps when there is no worker pool:
            "PROCESS", "DOCKER", "EXTERNAL" (Beam's names).
        environment_config: That environment's configuration (Beam's
            `--environment_config`), e.g. the address of a worker pool elsewhere.
        policy: Which functions requests may name.
    """

    host: str = "127.0.0.1"
    port: int = 8097
    worker_pool: bool = True
    worker_pool_port: int = 0
    environment_type: Optional[str] = None
    environment_config: Optional[str] = None
    policy: Policy = Policy()


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ExpansionServer:
    """The running service: `start()`, then `stop()` (or use it as a context manager)."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.address: Optional[str] = None
        self.worker_pool_address: Optional[str] = None
        self._server: Optional[grpc.Server] = None
        self._pool: Optional[grpc.Server] = None
        self._pool_servicer: Optional[worker_pool_main.BeamFnExternalWorkerPoolServicer] = None
        self._filter = FullyQualifiedNamedTransform.with_filter(TRANSFORM_NAME)
        self._stopped = threading.Event()
        self._bin_dir: Optional[str] = None

    def _python_first_on_path(self) -> None:
        """Beam's pool starts workers as a bare `python`: make that this interpreter.

        A wrapper script (not a symlink) keeps the interpreter's own path, so a venv's
        interpreter still finds its packages; images with only `python3.11` work too.
        """
        self._bin_dir = tempfile.mkdtemp(prefix="liveinference-workers-")
        wrapper = os.path.join(self._bin_dir, "python")
        with open(wrapper, "w") as file:
            file.write(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        os.chmod(wrapper, 0o755)
        os.environ["PATH"] = self._bin_dir + os.pathsep + os.environ.get("PATH", "")

    def _start_worker_pool(self) -> str:
        self._python_first_on_path()
        os.environ["PYTHONPATH"] = os.pathsep.join(
            path for path in [*sys.path, os.environ.get("PYTHONPATH", "")] if path
        )
        servicer = worker_pool_main.BeamFnExternalWorkerPoolServicer(
            use_process=True, state_cache_size=0, data_buffer_time_limit_ms=-1
        )
        pool = grpc.server(
            thread_pool_executor.shared_unbounded_instance(),
            options=[("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0)],
        )
        beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(servicer, pool)
        port = pool.add_insecure_port(_address(self.config.host, self.config.worker_pool_port))
        if port == 0:
            raise OSError(f"cannot listen on {self.config.host}:{self.config.worker_pool_port}")
        pool.start()
        self._pool, self._pool_servicer = pool, servicer
        threading.Thread(target=self._reap_workers, name="reap-workers", daemon=True).start()
        host = "localhost" if self.config.host in ("127.0.0.1", "::1", "localhost") else \
            self.config.host
        return _address(host, port)

    def _reap_workers(self) -> None:
        """Waits for SDK workers that ended by themselves (their job finished), so that a
        long-running service does not collect one exited process per job."""
        while not self._stopped.wait(timeout=5.0):
            processes = self._pool_servicer._worker_processes if self._pool_servicer else {}
            for worker_id, process in list(processes.items()):
                if process.poll() is not None:
                    processes.pop(worker_id, None)
                    _LOGGER.info("SDK worker %s ended with %s", worker_id, process.returncode)

    def _pipeline_options(self) -> PipelineOptions:
        flags: List[str] = ["--experiments=beam_fn_api", "--sdk_location=container"]
        if self.worker_pool_address:
            flags += ["--environment_type=EXTERNAL",
                      f"--environment_config={self.worker_pool_address}"]
        elif self.config.environment_type:
            flags.append(f"--environment_type={self.config.environment_type}")
            if self.config.environment_config:
                flags.append(f"--environment_config={self.config.environment_config}")
        return PipelineOptions(flags)

    def start(self) -> "ExpansionServer":
        """Starts the worker pool (if asked) and the expansion service.

        Returns:
            This server, with `address` and `worker_pool_address` set.

        Raises:
            OSError: if a port cannot be bound.
        """
        set_policy(self.config.policy)
        if self.config.worker_pool:
            self.worker_pool_address = self._start_worker_pool()
        options = self._pipeline_options()
        pickler.set_library(options.view_as(SetupOptions).pickle_library)
        self._filter.__enter__()
        server = grpc.server(thread_pool_executor.shared_unbounded_instance())
        beam_expansion_api_pb2_grpc.add_ExpansionServiceServicer_to_server(
            expansion_service.ExpansionServiceServicer(options), server
        )
        beam_artifact_api_pb2_grpc.add_ArtifactRetrievalServiceServicer_to_server(
            artifact_service.ArtifactRetrievalService(
                artifact_service.BeamFilesystemHandler(None).file_reader
            ),
            server,
        )
        port = server.add_insecure_port(_address(self.config.host, self.config.port))
        if port == 0:
            raise OSError(f"cannot listen on {self.config.host}:{self.config.port}")
        server.start()
        self._server = server
        self.address = _address(self.config.host, port)
        _LOGGER.info("expansion service for %s listening at %s", TRANSFORM_NAME, self.address)
        return self

    def wait(self) -> None:
        """Blocks until `stop()` is called (from a signal handler, say)."""
        while not self._stopped.wait(timeout=1.0):
            pass

    def stop(self, grace: float = 2.0) -> None:
        """Stops both servers and the workers the pool started."""
        if self._stopped.is_set():
            return
        if self._server is not None:
            self._server.stop(grace).wait()
        if self._pool is not None:
            self._pool.stop(grace).wait()
        if self._pool_servicer is not None:
            for process in list(self._pool_servicer._worker_processes.values()):
                worker_pool_main.kill_process_gracefully(process, timeout=5)
        self._filter.__exit__(None, None, None)
        if self._bin_dir:
            shutil.rmtree(self._bin_dir, ignore_errors=True)
        self._stopped.set()

    def __enter__(self) -> "ExpansionServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
