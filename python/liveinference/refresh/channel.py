"""The event channel: how model events reach every worker of one pipeline run.

A channel is a directory on any Beam filesystem (local, gs://, s3://, hdfs://, ...) that
belongs to one pipeline run. Each event is a new message object named
`event-<sequence>-<id>.json`, where the zero-padded sequence makes names sort by publishing
time; readers list the directory and read the newest. A message is never visible half
written: on a local disk it is written under a hidden temporary name and renamed into place;
object stores make an object visible only once its upload completes.

Who may read and write:
- A local channel is private to the user running the pipeline: its directory has mode
  0700, messages 0600, and the owner and mode are checked on every read and write, so a
  directory that another user made, or one whose mode lets others in, is refused.
- On a remote filesystem the store's own access control applies (bucket IAM, ACLs, HDFS
  permissions): give the channel a location only the pipeline's identity can write.

A run's messages carry its run id and live under a directory named for it, so a new run
never replays an old run's last event, even with the same `model_identifier`.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import uuid
from typing import Any, Dict, List, Optional, Set, Tuple

from apache_beam.io.filesystems import FileSystems

from liveinference.refresh.messages import Offer, decode_offer, encode_offer

__all__ = ["EventChannel", "is_local_path", "private_root"]

_LOG = logging.getLogger(__name__)

_PREFIX = "event-"
_SEQUENCE_DIGITS = 20
_LAST_SEQUENCE = [0]
_SEQUENCE_LOCK = threading.Lock()
_REMOVE_AT_EXIT: Set[str] = set()


def private_root() -> str:
    """Returns this user's private directory for local channels, under the system temp dir."""
    return os.path.join(tempfile.gettempdir(), f"liveinference-{os.geteuid()}")


def _next_sequence() -> int:
    """Returns a publishing time in ns, strictly increasing within this process."""
    with _SEQUENCE_LOCK:
        _LAST_SEQUENCE[0] = max(time.time_ns(), _LAST_SEQUENCE[0] + 1)
        return _LAST_SEQUENCE[0]


def is_local_path(path: str) -> bool:
    """True for a path on this machine's disk rather than on a shared filesystem."""
    return FileSystems.get_scheme(path) in (None, "file")


def _join(directory: str, name: str) -> str:
    if is_local_path(directory):
        return os.path.join(directory, name)
    return f"{directory.rstrip('/')}/{name}"


def _check_private(directory: str) -> None:
    """Raises PermissionError unless `directory` is a real directory only this user can use."""
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise PermissionError(
            f"event channel {directory!r} is not a directory (a link or a file is refused); "
            "remove it, or pass refresh_channel= a directory only you can write"
        )
    if info.st_uid != os.geteuid():
        raise PermissionError(
            f"event channel directory {directory!r} belongs to uid {info.st_uid}, not to this "
            f"user (uid {os.geteuid()}); another user may have made it to feed you models. "
            "Do not use it: remove it as its owner or root, or pass refresh_channel= a "
            "directory only you can write"
        )
    if info.st_mode & 0o077:
        raise PermissionError(
            f"event channel directory {directory!r} has mode {stat.S_IMODE(info.st_mode):o}, "
            f"which lets other users in; run `chmod 700 {directory}` or remove it"
        )


def _remove_registered() -> None:
    for path in sorted(_REMOVE_AT_EXIT):
        EventChannel(path, "").remove()


@dataclasses.dataclass(frozen=True)
class EventChannel:
    """The channel of one pipeline run: publish events to it, read the newest back.

    Attributes:
        path: The run's channel directory (a local path or a Beam filesystem URL).
        run_id: The run's id; messages carrying another run's id are ignored.
        private_parents: Local directories above `path` that liveinference made and that
            must stay private too (the user's private root, for the default channel).
    """

    path: str
    run_id: str
    private_parents: Tuple[str, ...] = ()

    @classmethod
    def for_run(cls, root: Optional[str], run_id: str, model_tag: str) -> "EventChannel":
        """Returns the channel of one run and model under `root` (None: the private root)."""
        safe_tag = re.sub(r"[^A-Za-z0-9_.-]", "_", model_tag)[:80]
        name = f"run-{run_id}-{safe_tag}"
        if root is None:
            base = private_root()
            return cls(os.path.join(base, name), run_id, (base,))
        return cls(_join(root, name), run_id)

    @property
    def is_local(self) -> bool:
        """True for a channel on this machine's disk (private, checked on every use)."""
        return is_local_path(self.path)

    def publish(self, offer: Offer) -> str:
        """Writes `offer` as the newest message of the channel; returns the message's path.

        Raises:
            ValueError: if `offer` is neither ModelMetadata nor a list of KeyModelPathMapping.
            PermissionError: if a local channel directory is not private to this user.
            OSError: if the channel cannot be written.
        """
        sequence, message_id = _next_sequence(), uuid.uuid4().hex
        message = {"run": self.run_id, "sequence": sequence, "id": message_id,
                   **encode_offer(offer)}
        payload = json.dumps(message).encode("utf-8")
        final = _join(self.path, f"{_PREFIX}{sequence:0{_SEQUENCE_DIGITS}d}-{message_id}.json")
        if not self.is_local:
            with FileSystems.create(final, mime_type="application/json") as file:
                file.write(payload)
            return final
        self._make_private_dirs()
        temporary = os.path.join(self.path, f".pending-{message_id}")
        descriptor = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600
        )
        with os.fdopen(descriptor, "wb") as file:
            file.write(payload)
        FileSystems.rename([temporary], [final])
        return final

    def newest(self) -> Optional[str]:
        """Returns the path of the newest message, or None if there is none yet.

        Raises:
            PermissionError: if a local channel directory is not private to this user.
            OSError: if the channel cannot be listed (the refresher logs and retries).
        """
        if self.is_local:
            for directory in self._dirs():
                if not os.path.lexists(directory):
                    return None
                _check_private(directory)
        pattern = _join(self.path, f"{_PREFIX}*.json")
        paths = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
        return max(paths) if paths else None

    def read(self, message_path: str) -> Optional[Tuple[Offer, Dict[str, Any]]]:
        """Reads one message; returns (offer, message), or None if it is gone or not this run's.

        Raises:
            PermissionError: if a local message or directory is not private to this user.
            ValueError: if the message cannot be decoded.
        """
        try:
            payload = self._read_bytes(message_path)
        except FileNotFoundError:
            return None
        message = json.loads(payload.decode("utf-8"))
        if message.get("run") != self.run_id:
            _LOG.warning(
                "ignoring event %s: it belongs to run %r, not to this run %r",
                message_path, message.get("run"), self.run_id,
            )
            return None
        return decode_offer(message), message

    def remove(self) -> None:
        """Deletes a local channel and its messages if they are this user's; never raises."""
        if not self.is_local or not os.path.lexists(self.path):
            return
        try:
            self._check_private_dirs()
            shutil.rmtree(self.path)
        except OSError as error:
            _LOG.warning("cannot remove event channel %s: %s", self.path, error)

    def remove_at_exit(self) -> None:
        """Deletes this local channel when this process exits (the pipeline's launcher)."""
        if self.is_local:
            if not _REMOVE_AT_EXIT:
                atexit.register(_remove_registered)
            _REMOVE_AT_EXIT.add(self.path)

    def _dirs(self) -> List[str]:
        return [*self.private_parents, self.path]

    def _check_private_dirs(self) -> None:
        for directory in self._dirs():
            _check_private(directory)

    def _make_private_dirs(self) -> None:
        os.makedirs(os.path.dirname(self._dirs()[0]), exist_ok=True)
        for directory in self._dirs():
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                pass
            _check_private(directory)

    def _read_bytes(self, message_path: str) -> bytes:
        if not self.is_local:
            with FileSystems.open(message_path) as file:
                return file.read()
        self._check_private_dirs()
        descriptor = os.open(message_path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(descriptor, "rb") as file:
            owner = os.fstat(file.fileno()).st_uid
            if owner != os.geteuid():
                raise PermissionError(
                    f"event {message_path!r} belongs to uid {owner}, not to this user; "
                    "it is ignored. Remove it and check who can write the channel"
                )
            return file.read()
