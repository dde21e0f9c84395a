"""Where a cluster run keeps its models, model announcements and event channel.

`LocalPlace` uses a directory (every TaskManager of this machine sees it); `S3Place` a prefix
of the object store's bucket (`cluster.objectstore`), which the workers reach only through
Beam's S3 filesystem. Either way a model file becomes visible whole: a local file under a
hidden name renamed into place, an object once its upload completes.

Layout under the place: `v1.pkl` (the step's own model), `watched/` (watch mode: new
versions), `dropped/` and `announcements/` (event mode: new versions, and one JSON message
per version naming it), `channel/` (the run's event channel).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List

from cluster.objectstore import ObjectStore

__all__ = ["LocalPlace", "Place", "S3Place"]


class Place:
    """Where models and announcements go; subclasses say how bytes are written."""

    def uri(self, key: str) -> str:
        """The URI of `key` under the place."""
        raise NotImplementedError

    def write(self, key: str, payload: bytes) -> str:
        """Writes `payload` as `key`, visible only once whole; returns its URI."""
        raise NotImplementedError

    def flags(self) -> List[str]:
        """Pipeline flags the workers need to reach the place."""
        return []

    @property
    def pattern(self) -> str:
        """The pattern watch mode polls."""
        return self.uri("watched/*.pkl")

    @property
    def announcements(self) -> str:
        """The pattern of announcement messages (event mode)."""
        return self.uri("announcements/*.json")

    @property
    def channel(self) -> str:
        """The event channel's location (event mode)."""
        return self.uri("channel")

    def announce(self, number: int, model_uri: str, name: str) -> str:
        """Writes announcement `number` naming `model_uri`; returns its URI."""
        message = json.dumps({"model_path": model_uri, "model_name": name}).encode()
        return self.write(f"announcements/{number:04d}.json", message)


class LocalPlace(Place):
    """A local directory every TaskManager of this machine can read.

    Args:
        root: the directory; made if missing.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def uri(self, key: str) -> str:
        """The path of `key` under the directory."""
        return str(self.root / key)

    def write(self, key: str, payload: bytes) -> str:
        """Writes under a hidden name, then renames into place."""
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(payload)
        os.replace(partial, path)
        return str(path)


class S3Place(Place):
    """A prefix of the object store's bucket.

    Args:
        store: the running object store.
        prefix: the keys' prefix, e.g. the run's name.
    """

    def __init__(self, store: ObjectStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix.strip("/")

    def uri(self, key: str) -> str:
        """The s3:// URI of `key` under the prefix."""
        return self.store.uri(f"{self.prefix}/{key}")

    def write(self, key: str, payload: bytes) -> str:
        """Uploads `payload`."""
        return self.store.put(f"{self.prefix}/{key}", payload)

    def flags(self) -> List[str]:
        """The store's endpoint and keys."""
        return self.store.flags()

    def keys(self, under: str) -> List[str]:
        """The keys under `under` (relative to the prefix)."""
        return self.store.keys(f"{self.prefix}/{under}")

