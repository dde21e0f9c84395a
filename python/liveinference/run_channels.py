"""The channels one run of a RunInference step uses: model versions, rollout decisions.

Both live where `refresh.pipeline_run.channel_for_run` puts them (a folder per run under
`refresh_channel`, `--temp_location` or this user's private directory); this module applies the
steps that publish to them and returns the refresh settings that name them.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import apache_beam as beam

from liveinference.refresh.config import RefreshConfig
from liveinference.refresh.model_versions import PublishModelVersions
from liveinference.refresh.pipeline_run import channel_for_run
from liveinference.rollout.control import PublishControl

__all__ = ["with_run_channels"]


def with_run_channels(
    pipeline: beam.Pipeline,
    refresh: RefreshConfig,
    channel_root: Optional[str],
    model_tag: str,
    live_versions: Optional[beam.PCollection],
    rollout_control: Optional[beam.PCollection],
) -> RefreshConfig:
    """Publishes `live_versions` (and rollout commands) to this run's channels.

    Args:
        pipeline: The pipeline the step is applied in (its run id names the channels).
        refresh: The step's refresh settings.
        channel_root: The `refresh_channel` given to RunInference, if any.
        model_tag: The step's model identifier.
        live_versions: ModelMetadata to relay to every worker as they arrive, if any.
        rollout_control: Rollout commands by hand, if any.

    Returns:
        `refresh` naming the model-version channel and, for a shared rollout decision, the
        decisions channel.

    Raises:
        ValueError: if a local channel cannot reach the runner's workers (see
            `channel_for_run`).
    """
    if live_versions is not None:
        channel = channel_for_run(pipeline, channel_root, model_tag)
        refresh = dataclasses.replace(refresh, channel=channel)
        _ = live_versions | "PublishModelVersions" >> PublishModelVersions(channel)
    if refresh.rollout is not None and refresh.rollout.shared_decision:
        decisions = channel_for_run(pipeline, channel_root, f"{model_tag}-rollout")
        refresh = dataclasses.replace(
            refresh, rollout=dataclasses.replace(refresh.rollout, decisions=decisions)
        )
        if rollout_control is not None:
            _ = rollout_control | "PublishRolloutControl" >> PublishControl(decisions)
    return refresh
