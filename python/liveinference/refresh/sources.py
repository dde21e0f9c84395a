"""Where model versions come from: a watched file pattern, or a channel that events write to.

A source is polled by the refresher and offers the version that should serve now, or
None. A version is identified by its fingerprint, so a re-written file is a new version.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Optional, Tuple

from apache_beam.io.filesystems import FileSystems

from liveinference.contract import ModelMetadata
from liveinference.refresh.channel import EventChannel
from liveinference.refresh.messages import Offer

__all__ = [
    "SETTLE_SECONDS",
    "ChannelSource",
    "FilePatternSource",
    "Version",
    "model_name_of",
]

SETTLE_SECONDS = 0.5
"""How soon a source that saw a file change looks again, to tell when it stopped changing."""


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
    sets `settling`, asking for a second poll after SETTLE_SECONDS.

    Args:
        pattern: A glob on any Beam filesystem, e.g. "/models/*.pkl" or "gs://b/m/*.pt".
    """

    def __init__(self, pattern: str) -> None:
        self._pattern = pattern
        self._seen: Dict[str, Tuple[float, int]] = {}
        self.settling = False

    def __repr__(self) -> str:
        return f"FilePatternSource({self._pattern!r})"

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


class ChannelSource:
    """Offers the newest version published to a run's event channel.

    Each poll lists the channel and reads a message only when a newer one appeared.

    Args:
        channel: The run's channel.
    """

    def __init__(self, channel: EventChannel) -> None:
        self._channel = channel
        self._newest: Optional[str] = None
        self._version: Optional[Version] = None
        self.settling = False

    def __repr__(self) -> str:
        return f"ChannelSource({self._channel.path!r})"

    def poll(self) -> Optional[Version]:
        """Reads the channel; returns the newest version published in this run, if any.

        Raises:
            PermissionError: if a local channel is not private to this user.
            ValueError: if the channel holds a message that cannot be read.
            OSError: if the channel cannot be listed or read.
        """
        newest = self._channel.newest()
        if newest is not None and newest != self._newest:
            read = self._channel.read(newest)
            self._newest = newest
            if read is not None:
                offer, message = read
                self._version = Version(offer, ("event", message["sequence"], message["id"]))
        return self._version
