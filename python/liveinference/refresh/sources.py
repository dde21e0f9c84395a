"""Where model versions come from: a watched file pattern, or a channel that events write to.

A source is polled by the refresher and offers the version that should serve now, or
None. A version is identified by its fingerprint, so a re-written file is a new version.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from apache_beam.io.filesystems import FileSystems

from liveinference.contract import KeyModelPathMapping, ModelMetadata

__all__ = [
    "ChannelSource",
    "FilePatternSource",
    "Version",
    "model_name_of",
    "publish",
]

Offer = Union[ModelMetadata, List[KeyModelPathMapping]]


@dataclasses.dataclass(frozen=True)
class Version:
    """One model version a source offers.

    Attributes:
        offer: The model to serve (or, for per-key models, the keys' new paths).
        fingerprint: What identifies this version: a re-written file gets a new one.
    """

    offer: Offer
    fingerprint: Tuple[Any, ...]

    @property
    def model_id(self) -> str:
        """The id of the offered model (the paths, for per-key models)."""
        if isinstance(self.offer, ModelMetadata):
            return self.offer.model_id
        return ",".join(mapping.update_path for mapping in self.offer)


def model_name_of(path: str) -> str:
    """Returns a metrics-friendly name for a model path: its file name without extension."""
    name = os.path.basename(path.rstrip("/")) or path
    return os.path.splitext(name)[0]


class FilePatternSource:
    """Offers the newest file or directory matching a pattern once it stops changing.

    A directory (a SavedModel, a `save_pretrained` folder) counts as one version whose
    time is its newest file's and whose size is its files' total. A version is offered
    only after two polls saw the same modification time and size, so one still being
    written is not loaded half-way. The first sighting of a change
    sets `settling`, asking the refresher for a quick second poll.

    Args:
        pattern: A glob on any Beam filesystem, e.g. "/models/*.pkl" or "gs://b/m/*.pt".
    """

    def __init__(self, pattern: str) -> None:
        self._pattern = pattern
        self._seen: Dict[str, Tuple[float, int]] = {}
        self.settling = False

    def poll(self) -> Optional[Version]:
        """Matches the pattern once; returns the newest stable file or directory, if any.

        Raises:
            OSError: if the filesystem cannot be listed (the refresher logs and retries).
        """
        pattern = self._pattern.rstrip("/")
        files = FileSystems.match([pattern])[0].metadata_list
        seen = {m.path: (m.last_updated_in_seconds, m.size_in_bytes) for m in files}
        depth = pattern.count("/")
        for nested in FileSystems.match([pattern + "/**"])[0].metadata_list:
            directory = "/".join(nested.path.split("/")[: depth + 1])
            mtime, size = seen.get(directory, (0.0, 0))
            seen[directory] = (
                max(mtime, nested.last_updated_in_seconds),
                size + nested.size_in_bytes,
            )
        stable = [
            (state, path)
            for path, state in seen.items()
            if self._seen.get(path) == state and state[1] > 0
        ]
        self.settling = any(self._seen.get(path) != state for path, state in seen.items())
        self._seen = seen
        if not stable:
            return None
        (mtime, size), path = max(stable)
        return Version(ModelMetadata(path, model_name_of(path)), (path, mtime, size))


def _encode(offer: Offer) -> Dict[str, Any]:
    if isinstance(offer, ModelMetadata):
        return {"model_id": offer.model_id, "model_name": offer.model_name}
    return {
        "keys": [
            {"keys": list(m.keys), "update_path": m.update_path, "model_id": m.model_id}
            for m in offer
        ]
    }


def _decode(payload: Dict[str, Any]) -> Offer:
    if "keys" in payload:
        return [
            KeyModelPathMapping(m["keys"], m["update_path"], m.get("model_id", ""))
            for m in payload["keys"]
        ]
    return ModelMetadata(payload["model_id"], payload["model_name"])


def publish(channel: str, offer: Offer) -> None:
    """Writes `offer` as the version every worker watching `channel` should serve.

    The write is atomic (a temporary file renamed into place), so readers never see half
    a message.

    Raises:
        ValueError: if `offer` is neither ModelMetadata nor a list of KeyModelPathMapping.
        OSError: if the channel directory cannot be written.
    """
    if not isinstance(offer, ModelMetadata) and not (
        isinstance(offer, Sequence) and all(isinstance(m, KeyModelPathMapping) for m in offer)
    ):
        raise ValueError(
            f"a model event must be ModelMetadata(model_id, model_name) or a list of "
            f"KeyModelPathMapping, got {type(offer).__name__}: {offer!r}"
        )
    normalized: Offer = offer if isinstance(offer, ModelMetadata) else list(offer)
    os.makedirs(channel, exist_ok=True)
    message = {"sequence": time.time_ns(), "id": uuid.uuid4().hex, **_encode(normalized)}
    temporary = os.path.join(channel, f".pending-{message['id']}")
    with open(temporary, "w") as file:
        json.dump(message, file)
    os.replace(temporary, os.path.join(channel, "current.json"))


class ChannelSource:
    """Offers the latest version published to a channel directory by `publish`.

    Args:
        channel: The directory that events are published to.
    """

    def __init__(self, channel: str) -> None:
        self._path = os.path.join(channel, "current.json")
        self.settling = False

    def poll(self) -> Optional[Version]:
        """Reads the channel; returns the latest published version, if any.

        Raises:
            ValueError: if the channel holds a message that cannot be read.
        """
        try:
            with open(self._path) as file:
                message = json.load(file)
        except FileNotFoundError:
            return None
        return Version(_decode(message), ("event", message["sequence"], message["id"]))
