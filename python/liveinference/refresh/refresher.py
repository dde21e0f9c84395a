"""The refresh loop of one worker process: poll sources, load, validate, swap; never fatal.

One thread per served model and process. Its first poll comes before the slot loads a model:
a worker that starts late (added, or restarted after a failure) serves the newest good version
its sources offer, not the step's first model. It holds the slot weakly and ends once the slot
is gone, once no DoFn has served from it for one interval (the pipeline ended: Beam's
`Shared` may keep the last slot alive in a long-lived process), or once the stop time has
passed.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from liveinference.contract import ModelHandler, ModelMetadata
from liveinference.deadletter import FailureRecord
from liveinference.refresh.config import RefreshConfig
from liveinference.refresh.loader import load_version
from liveinference.refresh.policy import version_to_load
from liveinference.refresh.slot import ModelSlot
from liveinference.refresh.sources import SETTLE_SECONDS, ChannelSource, FilePatternSource, Version
from liveinference.refresh.validate import ModelValidation, ModelValidationError
from liveinference.settings import checked_number
from liveinference.timeouts import call_with_timeout

__all__ = ["Refresher", "start_refresher"]

_LOG = logging.getLogger(__name__)

# Errors that mean the process is being stopped: the refresh thread lets them end it.
_STOPPING = (KeyboardInterrupt, SystemExit)

# How many times the first poll looks (SETTLE_SECONDS apart) for the sources to settle.
_FIRST_POLL_ROUNDS = 20


def start_refresher(config: RefreshConfig, slot: ModelSlot, handler: ModelHandler) -> None:
    """Starts the slot's refresher thread for `config`, unless the slot already has one.

    Called from each DoFn's setup(); one refresher runs per process and served model.

    Args:
        config: Where versions come from and how often to look.
        slot: The slot to swap new versions into.
        handler: The handler whose copies load each version.
    """
    sources: List[Any] = []
    if config.watch_pattern:
        sources.append(FilePatternSource(config.watch_pattern))
    if config.channel is not None:
        sources.append(ChannelSource(config.channel))
    slot.start_refresher(
        lambda: Refresher(
            slot,
            handler,
            sources,
            config.interval,
            config.validation,
            config.load_timeout,
            config.stop_timestamp,
        )
    )


class Refresher:
    """Keeps a slot serving the newest good version its sources offer.

    The first poll (`first_poll`) runs before the slot loads its first model, which then
    is the version it loaded, or the handler's own model if it loaded none.
    A version that fails to load or to validate is recorded on the slot as a
    FailureRecord (stage "load_model" or "validate") and not tried again until its
    fingerprint changes; the serving model keeps serving. A source that cannot be polled
    is recorded once per distinct error (stage "poll") and polled again next time. No
    exception ends the refresh thread except KeyboardInterrupt and SystemExit.

    Args:
        slot: The slot to swap models into.
        handler: The handler whose copies load each version.
        sources: Where versions come from (polled in order).
        interval: Seconds between polls.
        validation: Checks a candidate must pass, if any.
        load_timeout: The most seconds one load may take, if limited.
        stop_timestamp: Unix time after which polling stops, if any.

    Raises:
        TypeError, ValueError: if `interval` or `load_timeout` is not a finite positive
            number of seconds.
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
        self._interval = checked_number("interval", interval)
        self._validation = validation
        self._load_timeout = (
            None if load_timeout is None else checked_number("load_timeout", load_timeout)
        )
        self._stop_timestamp = stop_timestamp
        self._serving_fingerprint: Optional[Tuple[Any, ...]] = None
        self._failed: Set[Tuple[Any, ...]] = set()
        self._poll_errors: Dict[int, str] = {}
        self._first_poll_done = threading.Event()

    def start(self) -> None:
        """Starts polling on a daemon thread, named after the handler's first model; the
        thread's first poll is `first_poll`."""
        name = f"liveinference-refresh {self._handler.get_model_id()}"
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def first_poll(self) -> None:
        """Loads the newest good version the sources offer once they have settled; on the
        caller's thread. Ends `wait_first_poll`, whatever happened.

        Polls until no source is settling (a watched file is offered once two polls
        SETTLE_SECONDS apart saw it unchanged), at most _FIRST_POLL_ROUNDS times. A version
        that fails is reported and marked failed as on any poll. Per-key model paths are
        left for the polls after the first models have loaded: they refresh a serving set.
        """
        try:
            self._handler.set_environment_vars()
            for _ in range(_FIRST_POLL_ROUNDS):
                self.poll_once(single_models_only=True)
                if not self._settling():
                    return
                time.sleep(SETTLE_SECONDS)
        finally:
            self._first_poll_done.set()

    def wait_first_poll(self, timeout: Optional[float] = None) -> bool:
        """Waits until `first_poll` has ended; returns False if `timeout` seconds passed first."""
        return self._first_poll_done.wait(timeout)

    def poll_once(self, single_models_only: bool = False) -> None:
        """Polls every source once and loads what the policy picks; on the caller's thread.

        Args:
            single_models_only: Leave per-key model paths for a later poll.
        """
        self._follow_rollout()
        for index, source in enumerate(self._sources):
            try:
                offered = source.poll()
            except BaseException as error:  # noqa: BLE001 - a poll error must not end refresh
                if isinstance(error, _STOPPING):
                    raise
                self._poll_failed(index, source, error)
                continue
            self._poll_errors.pop(index, None)
            rollout = getattr(self._slot(), "rollout", None)
            failed = self._failed if rollout is None else self._failed | rollout.excluded()
            version = version_to_load(offered, self._serving_fingerprint, failed)
            if version is None:
                continue
            if single_models_only and not isinstance(version.offer, ModelMetadata):
                continue
            self._load(version)

    def _follow_rollout(self) -> None:
        """Acts on a rollout decision made for all workers, if the step shares one."""
        slot = self._slot()
        rollout = getattr(slot, "rollout", None)
        if rollout is None or not rollout.config.shared_decision:
            return
        try:
            rollout.follow(slot)
        except Exception as error:  # noqa: BLE001 - read again at the next poll
            _LOG.warning("cannot read the rollout decision: %s; reading again", error)

    def _poll_failed(self, index: int, source: Any, error: BaseException) -> None:
        """Logs a failed poll; records it on the slot when the error is new for the source."""
        described = f"{type(error).__name__}: {error}"
        _LOG.warning("cannot poll %s for new models: %s; retrying", source, described)
        if self._poll_errors.get(index) == described:
            return
        self._poll_errors[index] = described
        slot = self._slot()
        if slot is not None:
            current = slot.current()
            model_id = current.model_id if current else slot.first_model_id
            slot.record(FailureRecord.of(repr(source), "poll", error, model_id))

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
        except BaseException as error:  # noqa: BLE001 - a bad model is reported, never fatal
            if isinstance(error, _STOPPING):
                raise
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
        if slot.rollout is not None and slot.current() is not None:
            slot.rollout.stage(serving, version.fingerprint, version.offer)
            slot.record(report)
            return
        slot.swap(serving)
        self._serving_fingerprint = version.fingerprint
        slot.record(report)
        _LOG.info("now serving %s (loaded in %d ms)", version.model_id, report.latency_ms)

    def _retired(self, idle_before: bool) -> Optional[bool]:
        """Whether the slot is idle now (no DoFn serves from it); None if this refresher
        should end: the slot is gone, or DoFns served from it and none has for an interval."""
        slot = self._slot()
        if slot is None:
            return None
        if slot.users:
            return False
        if idle_before and slot.retire_refresher(self):
            _LOG.info("no step serves %s any more; its refresher ends", slot.first_model_id)
            return None
        return True

    def _settling(self) -> bool:
        return any(getattr(source, "settling", False) for source in self._sources)

    def _run(self) -> None:
        if self._stop_timestamp is None or time.time() < self._stop_timestamp:
            self._guarded(self.first_poll)
        self._first_poll_done.set()
        idle: Optional[bool] = False
        while True:
            idle = self._retired(bool(idle))
            if idle is None:
                return
            if self._stop_timestamp is not None and time.time() >= self._stop_timestamp:
                return
            self._guarded(self.poll_once)
            time.sleep(min(SETTLE_SECONDS, self._interval) if self._settling() else self._interval)

    @staticmethod
    def _guarded(poll: Callable[[], None]) -> None:
        """Runs `poll`; logs any error but the process stopping, so the thread outlives it."""
        try:
            poll()
        except BaseException as error:  # noqa: BLE001 - the thread outlives any one poll
            if isinstance(error, _STOPPING):
                raise
            _LOG.exception("model refresh failed unexpectedly: %s; polling again", error)
