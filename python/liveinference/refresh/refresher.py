"""The refresh loop of one worker process: poll sources, load, validate, swap; never fatal.

One thread per served model and process. It holds the slot weakly and ends once the slot
is gone (the pipeline's DoFns released it) or the stop time has passed.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any, Optional, Sequence, Set, Tuple

from liveinference.contract import ModelHandler
from liveinference.deadletter import FailureRecord
from liveinference.refresh.loader import load_version
from liveinference.refresh.policy import version_to_load
from liveinference.refresh.slot import ModelSlot
from liveinference.refresh.sources import Version
from liveinference.refresh.validate import ModelValidation, ModelValidationError
from liveinference.timeouts import call_with_timeout

__all__ = ["Refresher"]

_LOG = logging.getLogger(__name__)

SETTLE_SECONDS = 0.5


class Refresher:
    """Keeps a slot serving the newest good version its sources offer.

    A version that fails to load or to validate is recorded on the slot as a
    FailureRecord (stage "load_model" or "validate") and not tried again until its
    fingerprint changes; the serving model keeps serving.

    Args:
        slot: The slot to swap models into.
        handler: The handler whose copies load each version.
        sources: Where versions come from (polled in order).
        interval: Seconds between polls.
        validation: Checks a candidate must pass, if any.
        load_timeout: The most seconds one load may take, if limited.
        stop_timestamp: Unix time after which polling stops, if any.
    """

    def __init__(
        self,
        slot: ModelSlot,
        handler: ModelHandler,
        sources: Sequence[Any],
        interval: float,
        validation: Optional[ModelValidation] = None,
        load_timeout: Optional[float] = None,
        stop_timestamp: Optional[float] = None,
    ) -> None:
        self._slot = weakref.ref(slot)
        self._handler = handler
        self._sources = list(sources)
        self._interval = interval
        self._validation = validation
        self._load_timeout = load_timeout
        self._stop_timestamp = stop_timestamp
        self._serving_fingerprint: Optional[Tuple[Any, ...]] = None
        self._failed: Set[Tuple[Any, ...]] = set()

    def start(self) -> None:
        """Starts polling on a daemon thread."""
        threading.Thread(target=self._run, name="liveinference-refresh", daemon=True).start()

    def poll_once(self) -> None:
        """Polls every source once and loads what the policy picks; on the caller's thread."""
        for source in self._sources:
            try:
                offered = source.poll()
            except Exception as error:  # noqa: BLE001 - a listing error must not end refresh
                _LOG.warning("cannot poll %s for new models: %s; retrying", source, error)
                continue
            version = version_to_load(offered, self._serving_fingerprint, self._failed)
            if version is not None:
                self._load(version)

    def _load(self, version: Version) -> None:
        slot = self._slot()
        if slot is None:
            return
        try:
            serving, report = call_with_timeout(
                lambda: load_version(self._handler, slot.current(), version, self._validation),
                self._load_timeout,
                f"loading model {version.model_id}",
            )
        except Exception as error:  # noqa: BLE001 - a bad model is reported, never fatal
            self._failed.add(version.fingerprint)
            stage = "validate" if isinstance(error, ModelValidationError) else "load_model"
            slot.record(FailureRecord.of(version.offer, stage, error, version.model_id))
            current = slot.current()
            _LOG.warning(
                "rejected model %s at %s: %s; still serving %s; write new versions to a "
                "temporary name and rename them into place",
                version.model_id,
                stage,
                error,
                current.model_id if current else "the first model",
            )
            return
        slot.swap(serving)
        self._serving_fingerprint = version.fingerprint
        slot.record(report)
        _LOG.info("now serving %s (loaded in %d ms)", version.model_id, report.latency_ms)

    def _run(self) -> None:
        while self._slot() is not None:
            if self._stop_timestamp is not None and time.time() >= self._stop_timestamp:
                return
            self.poll_once()
            settling = any(getattr(source, "settling", False) for source in self._sources)
            time.sleep(min(SETTLE_SECONDS, self._interval) if settling else self._interval)
