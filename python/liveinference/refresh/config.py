"""How a RunInference step refreshes its model: which sources, how often, what must pass."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import List, Optional

from liveinference.contract import ModelHandler
from liveinference.refresh.refresher import Refresher
from liveinference.refresh.slot import ModelSlot
from liveinference.refresh.sources import ChannelSource, FilePatternSource
from liveinference.refresh.validate import ModelValidation

__all__ = ["DEFAULT_INTERVAL_SECONDS", "RefreshConfig", "default_channel"]

DEFAULT_INTERVAL_SECONDS = 10.0


def default_channel(model_tag: str) -> str:
    """Returns the channel directory used when none is given: under the system temp dir.

    That suits runners whose workers share one machine (the local runners, Prism, Flink in
    local mode); on a cluster, pass `refresh_channel` on a filesystem every worker sees.
    """
    return os.path.join(tempfile.gettempdir(), "liveinference-channels", model_tag)


@dataclasses.dataclass(frozen=True)
class RefreshConfig:
    """The refresh settings of one RunInference step.

    Attributes:
        watch_pattern: A file pattern every worker polls for new model files, if set.
        channel: The directory model events are published to, if events are used.
        interval: Seconds between polls.
        stop_timestamp: Unix time after which workers stop polling, if set.
        validation: What a candidate must pass before it serves, if anything.
        load_timeout: The most seconds a load may take, if limited.
    """

    watch_pattern: Optional[str] = None
    channel: Optional[str] = None
    interval: float = DEFAULT_INTERVAL_SECONDS
    stop_timestamp: Optional[float] = None
    validation: Optional[ModelValidation] = None
    load_timeout: Optional[float] = None

    @property
    def enabled(self) -> bool:
        """True when the step has any source of new versions."""
        return bool(self.watch_pattern or self.channel)

    def start(self, slot: ModelSlot, handler: ModelHandler) -> None:
        """Starts the slot's refresher if it has none yet (once per process and model)."""
        sources: List[object] = []
        if self.watch_pattern:
            sources.append(FilePatternSource(self.watch_pattern))
        if self.channel:
            sources.append(ChannelSource(self.channel))
        slot.start_refresher(
            lambda: Refresher(
                slot,
                handler,
                sources,
                self.interval,
                self.validation,
                self.load_timeout,
                self.stop_timestamp,
            )
        )
