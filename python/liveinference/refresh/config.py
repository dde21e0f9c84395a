"""How a RunInference step refreshes its model: which sources, how often, what must pass.

`RefreshConfig` is plain data: `refresher.start_refresher` starts the thread that acts on it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

from liveinference.refresh.channel import EventChannel
from liveinference.refresh.validate import ModelValidation
from liveinference.rollout.config import RolloutConfig
from liveinference.settings import checked_number

__all__ = ["DEFAULT_EVENT_INTERVAL_SECONDS", "DEFAULT_INTERVAL_SECONDS", "RefreshConfig"]

DEFAULT_INTERVAL_SECONDS = 10.0
DEFAULT_EVENT_INTERVAL_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class RefreshConfig:
    """The refresh settings of one RunInference step.

    Attributes:
        watch_pattern: A file pattern every worker polls for new model files, if set.
        channel: The run's event channel, if events are used (set when the step expands).
        interval: Seconds between polls.
        stop_timestamp: Unix time after which workers stop polling, if set.
        validation: What a candidate must pass before it serves, if anything.
        load_timeout: The most seconds a load may take, if limited.
        rollout: How a new version is rolled out (canary or shadow, gates), if it is;
            else it serves every element as soon as it is loaded and validated.
    """

    watch_pattern: Optional[str] = None
    channel: Optional[EventChannel] = None
    interval: float = DEFAULT_INTERVAL_SECONDS
    stop_timestamp: Optional[float] = None
    validation: Optional[ModelValidation] = None
    load_timeout: Optional[float] = None
    rollout: Optional[RolloutConfig] = None

    @property
    def enabled(self) -> bool:
        """True when the step has any source of new versions."""
        return bool(self.watch_pattern or self.channel)

    @classmethod
    def from_arguments(
        cls, watch_pattern: Optional[str], has_events: bool, kwargs: Mapping[str, Any]
    ) -> "RefreshConfig":
        """Builds the settings from RunInference's `interval` and `stop_timestamp` arguments.

        The channel is left unset: it belongs to a pipeline run and is set at expansion.

        Raises:
            TypeError, ValueError: naming the argument, if `interval` is not a finite
                positive number of seconds or `stop_timestamp` not a finite Unix time.
        """
        default = DEFAULT_INTERVAL_SECONDS if watch_pattern else DEFAULT_EVENT_INTERVAL_SECONDS
        interval = checked_number("interval", kwargs.get("interval", default))
        stop = kwargs.get("stop_timestamp")
        if stop is not None:
            stop = checked_number("stop_timestamp", stop, unit="seconds since 1970")
        return cls(watch_pattern=watch_pattern, interval=interval, stop_timestamp=stop)
