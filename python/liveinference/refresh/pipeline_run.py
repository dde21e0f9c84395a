"""What belongs to one pipeline run: its id, and where its event channel lives.

The run id is made when the first RunInference step expands into a pipeline, and shared by
every step of that pipeline, so steps with one `model_identifier` still share a model, while
a new pipeline (a new run) gets a new id, a new channel and a new model slot.

Where the channel lives, in order: the `refresh_channel` given; else a folder under the
pipeline's `--temp_location` (Dataflow always has one); else this user's private local
directory. A local channel is refused when the runner's workers do not share this machine's
disk, with a message that says what to pass instead.
"""

from __future__ import annotations

import uuid
import weakref
from typing import Any, Optional
from urllib.parse import urlsplit

from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PortableOptions,
    SparkRunnerOptions,
)

from liveinference.refresh.channel import EventChannel, is_local_path

__all__ = ["channel_for_run", "remote_workers", "run_id_of"]

_RUN_IDS: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()
_LOCAL_HOSTS = frozenset({"", "localhost", "127.0.0.1", "::1", "[local]", "[auto]", "embed"})
_CHANNELS_FOLDER = "liveinference-channels"


def run_id_of(pipeline: Any) -> str:
    """Returns the run id of `pipeline`, making one the first time it is asked."""
    run_id = _RUN_IDS.get(pipeline)
    if run_id is None:
        run_id = _RUN_IDS[pipeline] = uuid.uuid4().hex
    return run_id


def _host(address: Optional[str]) -> str:
    if not address:
        return ""
    if address.startswith("[") or address.startswith("local"):
        return "[local]"
    return (urlsplit(address if "//" in address else f"//{address}").hostname or "").lower()


def remote_workers(pipeline: Any) -> Optional[str]:
    """Names the runner if its workers may run on other machines, else returns None."""
    runner = type(pipeline.runner).__name__
    if "Dataflow" in runner:
        return runner
    options = pipeline.options
    for address in (
        options.view_as(PortableOptions).job_endpoint,
        options.view_as(FlinkRunnerOptions).flink_master,
        options.view_as(SparkRunnerOptions).spark_master_url,
    ):
        if _host(address) not in _LOCAL_HOSTS:
            return f"{runner} at {address}"
    return None


def channel_for_run(
    pipeline: Any, refresh_channel: Optional[str], model_tag: str
) -> EventChannel:
    """Returns the event channel of `model_tag` in this run of `pipeline`.

    Args:
        pipeline: The pipeline the step expands into.
        refresh_channel: Where the user asked for channels, if anywhere.
        model_tag: The step's model identifier.

    Raises:
        ValueError: if the channel would be on this machine's disk while the runner's
            workers run elsewhere.
    """
    root = refresh_channel
    if root is None:
        temp_location = pipeline.options.view_as(GoogleCloudOptions).temp_location
        if temp_location:
            root = f"{temp_location.rstrip('/')}/{_CHANNELS_FOLDER}"
    remote = remote_workers(pipeline)
    if remote and (root is None or is_local_path(root)):
        where = "this machine's private directory" if root is None else repr(root)
        raise ValueError(
            f"model events would be relayed through {where}, a local path that the workers "
            f"of {remote} cannot see; pass refresh_channel='gs://BUCKET/liveinference-channels' "
            "(or any s3://, hdfs://, ... folder every worker can read and write), or set the "
            "pipeline's --temp_location on such a filesystem"
        )
    channel = EventChannel.for_run(root, run_id_of(pipeline), model_tag)
    channel.remove_at_exit()
    return channel
