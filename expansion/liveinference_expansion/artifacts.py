"""The artifact service of the expansion port: it serves what this service staged, nothing else.

A Java (or other SDK) client that expanded a transform asks the expansion service's artifact
endpoint for the files its environment depends on. Beam's `ArtifactRetrievalService` with
`BeamFilesystemHandler(None)` reads whatever path or URL a caller names (`/etc/shadow`, an
internal URL). `StagedArtifacts` knows the exact artifacts of the environments this service
puts in its expansion responses and refuses every other one with PERMISSION_DENIED.
"""

from __future__ import annotations

import logging
from typing import Dict, Iterable, Iterator, Set, Tuple

import grpc
from apache_beam.portability import common_urns
from apache_beam.portability.api import (
    beam_artifact_api_pb2,
    beam_artifact_api_pb2_grpc,
    beam_runner_api_pb2,
)

__all__ = ["StagedArtifacts"]

_LOGGER = logging.getLogger(__name__)

_CHUNK = 2 << 20


def _key(artifact: beam_runner_api_pb2.ArtifactInformation) -> Tuple[str, bytes]:
    return artifact.type_urn, artifact.type_payload


def _describe(artifact: beam_runner_api_pb2.ArtifactInformation) -> str:
    if artifact.type_urn == common_urns.artifact_types.FILE.urn:
        try:
            path = beam_runner_api_pb2.ArtifactFilePayload.FromString(artifact.type_payload).path
        except Exception:  # an unreadable payload is described by its type alone
            return "a file artifact with an unreadable payload"
        return f"file {path!r}"
    return f"an artifact of type {artifact.type_urn!r}"


class StagedArtifacts(beam_artifact_api_pb2_grpc.ArtifactRetrievalServiceServicer):
    """Serves the artifacts this service staged for its own environments, and refuses the rest.

    Args:
        staged: The dependencies of the environments the service hands out (files it wrote).
    """

    def __init__(self, staged: Iterable[beam_runner_api_pb2.ArtifactInformation]) -> None:
        self._staged: Set[Tuple[str, bytes]] = set()
        self._paths: Dict[Tuple[str, bytes], str] = {}
        for artifact in staged:
            if artifact.type_urn != common_urns.artifact_types.FILE.urn:
                raise ValueError(f"the service stages files only, not {artifact.type_urn!r}")
            self._staged.add(_key(artifact))
            self._paths[_key(artifact)] = beam_runner_api_pb2.ArtifactFilePayload.FromString(
                artifact.type_payload).path

    def _refuse(self, artifact: beam_runner_api_pb2.ArtifactInformation,
                context: grpc.ServicerContext) -> None:
        message = (f"refused: {_describe(artifact)} is not an artifact this expansion service "
                   f"staged; it serves only the {len(self._staged)} file(s) of its own "
                   "environments")
        _LOGGER.warning("artifact request from %s %s", context.peer(), message)
        context.abort(grpc.StatusCode.PERMISSION_DENIED, message)

    def ResolveArtifacts(
        self, request: beam_artifact_api_pb2.ResolveArtifactsRequest,
        context: grpc.ServicerContext,
    ) -> beam_artifact_api_pb2.ResolveArtifactsResponse:
        """Answers with the same artifacts when all were staged here; refuses otherwise."""
        for artifact in request.artifacts:
            if _key(artifact) not in self._staged:
                self._refuse(artifact, context)
        return beam_artifact_api_pb2.ResolveArtifactsResponse(replacements=request.artifacts)

    def GetArtifact(
        self, request: beam_artifact_api_pb2.GetArtifactRequest, context: grpc.ServicerContext,
    ) -> Iterator[beam_artifact_api_pb2.GetArtifactResponse]:
        """Streams a staged file in chunks; refuses any other artifact before opening it."""
        key = _key(request.artifact)
        if key not in self._staged:
            self._refuse(request.artifact, context)
            return
        with open(self._paths[key], "rb") as file:
            while chunk := file.read(_CHUNK):
                yield beam_artifact_api_pb2.GetArtifactResponse(data=chunk)
