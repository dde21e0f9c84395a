"""The gRPC side: Beam's own expansion service behind an allow-list, its artifacts, and a
private Python worker pool for portable runners.

`GuardedExpansionServicer` is Beam's `ExpansionServiceServicer` (as in Beam's
`expansion_service_main`) whose `Expand` first runs `check_expansion_request` on the raw
protobuf, so nothing outside the allow-list is ever decoded; Beam's fully-qualified-name filter,
set to exactly `TRANSFORM_NAME`, stays on as a second check. The artifact endpoint serves only
the files of the service's own environments (`StagedArtifacts`), and the worker pool listens on
a Unix socket only its user can reach (`PrivateWorkerPool`). Beyond loopback the expansion port
needs TLS (`listen_credentials`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import threading
from typing import List, Optional

import grpc
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions
from apache_beam.portability.api import (
    beam_artifact_api_pb2_grpc,
    beam_expansion_api_pb2,
    beam_expansion_api_pb2_grpc,
    beam_runner_api_pb2,
)
from apache_beam.runners.portability import expansion_service
from apache_beam.transforms.fully_qualified_named_transform import FullyQualifiedNamedTransform
from apache_beam.utils import thread_pool_executor

from liveinference_expansion.artifacts import StagedArtifacts
from liveinference_expansion.boot import write_boot_command
from liveinference_expansion.policy import Policy, set_policy
from liveinference_expansion.request_guard import RequestRefused, check_expansion_request
from liveinference_expansion.stock_beam import BEAM_RUN_INFERENCE_URN
from liveinference_expansion.tls import TlsFiles, listen_credentials
from liveinference_expansion.transform import TRANSFORM_NAME
from liveinference_expansion.warm_boot import WarmBoots
from liveinference_expansion.worker_pool import PrivateWorkerPool, private_directory

__all__ = ["ExpansionServer", "GuardedExpansionServicer", "ServiceConfig"]

_LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """How to run the service.

    Attributes:
        host: The interface to listen on; loopback by default. Any other needs `tls`.
        port: The expansion port; 0 picks a free one.
        worker_pool: Run a private Python worker pool (EXTERNAL environment) beside the service.
        process_workers: Instead of a pool, hand out a PROCESS environment whose command
            (`boot`) the runner runs to start each worker itself; for runners that cannot dial
            the pool's Unix socket (Beam's Flink job server). The command hands each worker
            to a spare process whose imports are done (`warm_boot`).
        worker_pool_dir: The private directory (mode 0700, made if missing) for the pool's Unix
            socket or the `boot` command; None makes a fresh one under the system temp dir.
        environment_type: The environment of the Python steps when there is no worker pool:
            "PROCESS", "DOCKER", "EXTERNAL" (Beam's names).
        environment_config: That environment's configuration (Beam's
            `--environment_config`), e.g. the address of a worker pool elsewhere.
        policy: Which functions requests may name.
        tls: TLS server credentials for the expansion port; required beyond loopback.
    """

    host: str = "127.0.0.1"
    port: int = 8097
    worker_pool: bool = True
    process_workers: bool = False
    worker_pool_dir: Optional[str] = None
    environment_type: Optional[str] = None
    environment_config: Optional[str] = None
    policy: Policy = Policy()
    tls: Optional[TlsFiles] = None


class GuardedExpansionServicer(expansion_service.ExpansionServiceServicer):
    """Beam's expansion servicer, answering only requests that pass `check_expansion_request`.

    Args:
        options: The pipeline options of the expanded transforms (their environment).
        allow_inline_source: Admit Beam's stock Java RunInference (its model handler is
            Python source), expanded with liveinference (`stock_beam`).
    """

    def __init__(self, options: PipelineOptions, allow_inline_source: bool = False) -> None:
        super().__init__(options)
        self._allow_inline_source = allow_inline_source

    def Expand(self, request: beam_expansion_api_pb2.ExpansionRequest,
               context: Optional[grpc.ServicerContext] = None,
               ) -> beam_expansion_api_pb2.ExpansionResponse:
        """Refuses a request outside the allow-list, naming what was refused; else expands it
        (Beam's stock RunInference as the guard rewrote it, for `stock_beam`)."""
        peer = context.peer() if context is not None else "a local caller"
        try:
            request = check_expansion_request(request, self._allow_inline_source)
        except RequestRefused as error:
            _LOGGER.warning("expansion request from %s %s", peer, error)
            return beam_expansion_api_pb2.ExpansionResponse(error=str(error))
        if request.transform.spec.urn == BEAM_RUN_INFERENCE_URN:
            _LOGGER.warning("running the model loader source of Beam's stock RunInference "
                            "from %s (--allow-inline-source)", peer)
        return super().Expand(request, context)

    def DiscoverSchemaTransform(
        self, request: beam_expansion_api_pb2.DiscoverSchemaTransformRequest,
        context: Optional[grpc.ServicerContext] = None,
    ) -> beam_expansion_api_pb2.DiscoverSchemaTransformResponse:
        """Answers that this service offers no schema transforms."""
        return beam_expansion_api_pb2.DiscoverSchemaTransformResponse(
            error=f"this service offers no schema transforms; it expands only {TRANSFORM_NAME}")

    def staged_artifacts(self) -> List[beam_runner_api_pb2.ArtifactInformation]:
        """The files this service staged for the environment it puts in its responses."""
        return list(self._default_environment.artifacts())


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ExpansionServer:
    """The running service: `start()`, then `stop()` (or use it as a context manager)."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.address: Optional[str] = None
        self.worker_pool_address: Optional[str] = None
        self._server: Optional[grpc.Server] = None
        self._pool: Optional[PrivateWorkerPool] = None
        self._boot_dir: Optional[str] = None
        self._warm_boots: Optional[WarmBoots] = None
        self._filter = FullyQualifiedNamedTransform.with_filter(TRANSFORM_NAME)
        self._filtering = False
        self._stopped = threading.Event()

    def _pipeline_options(self) -> PipelineOptions:
        flags: List[str] = ["--experiments=beam_fn_api", "--sdk_location=container"]
        if self._boot_dir and self._warm_boots:
            command = write_boot_command(self._boot_dir,
                                         handoff_socket=self._warm_boots.socket_path)
            flags += ["--environment_type=PROCESS",
                      f"--environment_config={json.dumps({'command': command})}"]
        elif self.worker_pool_address:
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
            InsecureListenRefused: if the host is not loopback and no TLS files were given.
            PermissionError: if the worker pool's directory is not private to this user.
            OSError: if a port or socket cannot be bound.
        """
        credentials = listen_credentials(self.config.host, self.config.tls)
        set_policy(self.config.policy)
        if self.config.process_workers:
            self._boot_dir = private_directory(self.config.worker_pool_dir)
            self._warm_boots = WarmBoots(self._boot_dir)
            self._warm_boots.start()
        elif self.config.worker_pool:
            self._pool = PrivateWorkerPool(self.config.worker_pool_dir)
            self.worker_pool_address = self._pool.start()
        options = self._pipeline_options()
        pickler.set_library(options.view_as(SetupOptions).pickle_library)
        self._filter.__enter__()
        self._filtering = True
        servicer = GuardedExpansionServicer(options, self.config.policy.allow_inline_source)
        server = grpc.server(thread_pool_executor.shared_unbounded_instance())
        beam_expansion_api_pb2_grpc.add_ExpansionServiceServicer_to_server(servicer, server)
        beam_artifact_api_pb2_grpc.add_ArtifactRetrievalServiceServicer_to_server(
            StagedArtifacts(servicer.staged_artifacts()), server)
        address = _address(self.config.host, self.config.port)
        port = (server.add_insecure_port(address) if credentials is None
                else server.add_secure_port(address, credentials))
        if port == 0:
            raise OSError(f"cannot listen on {self.config.host}:{self.config.port}")
        server.start()
        self._server = server
        self.address = _address(self.config.host, port)
        _LOGGER.info("expansion service for %s listening at %s (%s)", TRANSFORM_NAME,
                     self.address, "plaintext, loopback" if credentials is None else "TLS")
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
            self._pool.stop(grace)
        if self._warm_boots is not None:
            self._warm_boots.close()
        if self._boot_dir and self.config.worker_pool_dir is None:
            shutil.rmtree(self._boot_dir, ignore_errors=True)
        if self._filtering:
            self._filter.__exit__(None, None, None)
        self._stopped.set()

    def __enter__(self) -> "ExpansionServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
