"""PTransforms over model versions: watch a pattern, read them from messages, relay them.

`WatchFilePattern` and `ModelMetadataFromMessages` make PCollections of ModelMetadata;
`RunInference(model_metadata_pcoll=...)` relays each one to its workers through the run's
event channel (refresh/channel.py) with `PublishModelVersions`, which works on every runner
(Beam's triggered side inputs do not run on the local runners, Prism or Flink).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Iterator, Mapping, Optional, Union

import apache_beam as beam
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from liveinference.contract import ModelMetadata
from liveinference.refresh.channel import EventChannel
from liveinference.refresh.sources import SETTLE_SECONDS, FilePatternSource, model_name_of
from liveinference.settings import checked_number

__all__ = [
    "ModelMetadataFromMessages",
    "PublishModelVersions",
    "WatchFilePattern",
    "model_metadata_from_message",
]

_LOG = logging.getLogger(__name__)


class _PollPattern(beam.DoFn):
    """On each tick, emits the newest complete file of the pattern if it was not emitted."""

    def __init__(self, pattern: str) -> None:
        self._pattern = pattern
        self._source: Optional[FilePatternSource] = None
        self._emitted: Optional[tuple] = None

    def setup(self) -> None:
        self._source = FilePatternSource(self._pattern)
        self._emitted = None

    def process(self, _tick: Any) -> Iterator[Any]:
        assert self._source is not None, "setup() has not run"
        while True:
            version = self._source.poll()
            if version is not None and version.fingerprint != self._emitted:
                self._emitted = version.fingerprint
                yield version.offer
            if not self._source.settling:
                return
            time.sleep(SETTLE_SECONDS)


class WatchFilePattern(beam.PTransform):
    """Emits ModelMetadata whenever a new model file matching a pattern is complete.

    A file counts as new when it appears or when its modification time or size changes,
    so a re-written file with the same name is a new version. A file is emitted only once
    its size and time held across two polls, so a file still being written is not. Works
    in batch and streaming, on any runner that runs `PeriodicImpulse`.

    Args:
        file_pattern: A glob on any Beam filesystem.
        interval: Seconds between polls (Beam's default is 360; ours is 10).
        stop_timestamp: When to stop watching (a Unix time or Beam Timestamp).

    Raises:
        TypeError, ValueError: if `interval` is not a finite positive number of seconds.
    """

    def __init__(
        self,
        file_pattern: str,
        interval: float = 10,
        stop_timestamp: Union[float, Timestamp] = MAX_TIMESTAMP,
    ) -> None:
        super().__init__()
        self.file_pattern = file_pattern
        self.interval = checked_number("interval", interval)
        self.stop_timestamp = stop_timestamp

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "Poll" >> PeriodicImpulse(
                start_timestamp=time.time(),
                stop_timestamp=self.stop_timestamp,
                fire_interval=self.interval,
            )
            | "NewVersions" >> beam.ParDo(_PollPattern(self.file_pattern))
        )


def model_metadata_from_message(
    message: Union[bytes, str, Mapping[str, Any]],
    path_field: str = "model_path",
    name_field: str = "model_name",
) -> ModelMetadata:
    """Turns a message naming a model into ModelMetadata.

    The message is a JSON object (bytes or str) or a mapping with `path_field` and,
    optionally, `name_field`; or a plain path. The name defaults to the file's name.

    Raises:
        ValueError: naming the message, if it carries no model path.
    """
    payload: Any = message
    if isinstance(message, bytes):
        payload = message.decode("utf-8")
    if isinstance(payload, str):
        text = payload.strip()
        if not text.startswith("{"):
            if not text:
                raise ValueError("an empty message names no model; send a path or JSON")
            return ModelMetadata(text, model_name_of(text))
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"message {text[:200]!r} is not valid JSON: {error}") from error
    path = payload.get(path_field) if isinstance(payload, Mapping) else None
    if not isinstance(path, str) or not path:
        raise ValueError(
            f"message {str(message)[:200]!r} has no {path_field!r} string naming the model "
            f"file; send e.g. {{\"{path_field}\": \"/models/v2.pkl\"}}"
        )
    name = payload.get(name_field) or model_name_of(path)
    return ModelMetadata(path, str(name))


class ModelMetadataFromMessages(beam.PTransform):
    """Maps messages (e.g. from Pub/Sub or Kafka) that name model files to ModelMetadata.

    Malformed messages raise ValueError; to keep them instead, apply
    `beam.Map(model_metadata_from_message).with_exception_handling()` directly.

    Args:
        path_field: The JSON field holding the model path.
        name_field: The JSON field holding the model name (optional in messages).
    """

    def __init__(self, path_field: str = "model_path", name_field: str = "model_name") -> None:
        super().__init__()
        self._path_field = path_field
        self._name_field = name_field

    def expand(self, messages: beam.PCollection) -> beam.PCollection:
        return messages | "ToModelMetadata" >> beam.Map(
            model_metadata_from_message, self._path_field, self._name_field
        )


class _Publish(beam.DoFn):
    def __init__(self, channel: EventChannel) -> None:
        self._channel = channel

    def process(self, offer: Any) -> Iterator[Any]:
        message = self._channel.publish(offer)
        _LOG.info("published model version %s as %s", offer, message)
        yield offer


class PublishModelVersions(beam.PTransform):
    """Relays each ModelMetadata (or per-key path list) to the workers watching `channel`.

    Args:
        channel: The run's event channel, on a filesystem every worker can read.

    Raises:
        ValueError: at run time, for an element that is not a model event.
    """

    def __init__(self, channel: EventChannel) -> None:
        super().__init__()
        self._channel = channel

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        return events | "Publish" >> beam.ParDo(_Publish(self._channel))
