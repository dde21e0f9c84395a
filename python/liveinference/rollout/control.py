"""Manual control of a rollout by event: promote now, roll back, pin a version, unpin.

A control message is a `RolloutControl(action, model_id)` element of the PCollection given
to `RunInference(...).with_rollout(control=...)`. The step publishes each one on the run's
rollout channel, beside the decisions of `decide_every`, in the same format
(`ModelMetadata(model_id, action)`), and every worker's refresher acts on the newest
message (`RolloutState.follow`):

- `promote`: the candidate `model_id` serves every element now, gates or not.
- `rollback`: the candidate `model_id` stops serving; or, if `model_id` is the stable model
  promoted by this rollout, the version it replaced serves again.
- `pin`: `model_id` (the stable model, the candidate, or the version the stable one
  replaced) serves every element, and new versions wait until `unpin`.
- `unpin`: new versions are rolled out again, those that waited included.

Messages are read newest first, one per refresh interval: of two messages published within
one interval, a worker may act on the later only.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple, Optional, Tuple

import apache_beam as beam

from liveinference.contract import ModelMetadata
from liveinference.refresh.model_versions import PublishModelVersions

__all__ = ["Command", "PublishControl", "RolloutControl", "command_of", "control_message"]


class Command(str, enum.Enum):
    """What a control message (or a shared decision) asks every worker to do."""

    PROMOTE = "promote"
    ROLLBACK = "rollback"
    PIN = "pin"
    UNPIN = "unpin"


class RolloutControl(NamedTuple):
    """A manual rollout command.

    Attributes:
        action: "promote", "rollback", "pin" or "unpin" (a `Command`).
        model_id: The version it is about (the candidate's, the stable model's or the
            version the stable one replaced); unused by "unpin".
    """

    action: str
    model_id: str = ""


def control_message(control: Any) -> ModelMetadata:
    """Returns the channel message of a control element.

    Args:
        control: A `RolloutControl`, or a `ModelMetadata(model_id, action)`.

    Returns:
        `ModelMetadata(model_id, action)`.

    Raises:
        ValueError: if it is neither, or its action is not a Command.
    """
    if isinstance(control, ModelMetadata):
        control = RolloutControl(control.model_name, control.model_id)
    if not isinstance(control, RolloutControl):
        raise ValueError(
            f"a rollout control element must be a RolloutControl(action, model_id), got "
            f"{control!r}"
        )
    try:
        command = Command(control.action)
    except ValueError:
        raise ValueError(
            f"unknown rollout action {control.action!r}: use one of "
            f"{[c.value for c in Command]}"
        ) from None
    if command is not Command.UNPIN and not control.model_id:
        raise ValueError(f"rollout action {command.value!r} needs the model_id it is about")
    return ModelMetadata(control.model_id, command.value)


def command_of(offer: Any) -> Optional[Tuple[str, Command]]:
    """Reads a channel message: (model_id, Command), or None if it is not one."""
    if not isinstance(offer, ModelMetadata):
        return None
    try:
        return offer.model_id, Command(offer.model_name)
    except ValueError:
        return None


class PublishControl(beam.PTransform):
    """Publishes each control element on the run's rollout channel.

    Args:
        channel: The run's rollout channel (an EventChannel).

    Raises:
        ValueError: at run time, for an element that is not a control message.
    """

    def __init__(self, channel: Any) -> None:
        super().__init__()
        self._channel = channel

    def expand(self, controls: beam.PCollection) -> beam.PCollection:
        return (
            controls
            | "AsMessages" >> beam.Map(control_message)
            | "Publish" >> PublishModelVersions(self._channel)
        )
