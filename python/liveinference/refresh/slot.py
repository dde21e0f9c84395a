"""The model a worker process serves: one reference, read once per batch, swapped atomically."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import time
from typing import Any, Callable, List, Optional, Union

import psutil

from liveinference.contract import ModelHandler
from liveinference.deadletter import FailureRecord
from liveinference.errors import ModelLoadError
from liveinference.timeouts import start_in_thread, wait_for

__all__ = ["LoadReport", "ModelSlot", "Serving", "SlotEvent", "resident_bytes"]

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Serving:
    """A loaded model, its id, and the handler that runs it: read as one reference.

    Attributes:
        model_id: The id predictions made by this model carry; None if unknown.
        model: The loaded model.
        handler: The handler that loaded it and runs it (a copy per refreshed version).
        model_name: The name that prefixes this model's metrics; "" for the first model.
    """

    model_id: Optional[str]
    model: Any
    handler: ModelHandler
    model_name: str = ""


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What one successful model load cost.

    Attributes:
        model_id: The model loaded.
        model_name: Its metrics prefix.
        latency_ms: How long loading (and validating) took.
        byte_size: How much the process's resident memory grew (0 if it did not).
    """

    model_id: Optional[str]
    model_name: str
    latency_ms: int
    byte_size: int


SlotEvent = Union[LoadReport, FailureRecord]


def resident_bytes() -> int:
    """Returns this process's resident memory in bytes."""
    return int(psutil.Process().memory_info().rss)


class ModelSlot:
    """Holds the serving model of one worker process, shared by all its threads.

    The first caller of `serving()` loads the handler's own model; concurrent callers wait
    for that one load. A refresher swaps later versions in with `swap()`. Loads, swaps and
    failures are queued as events for the processing thread to report (Beam's metrics and
    outputs are only reachable from there).

    Args:
        handler: The handler whose `load_model` makes the first model.
        load: The function that loads it (the handler's, or a cross-process variant).
    """

    def __init__(self, handler: ModelHandler, load: Callable[[], Any]) -> None:
        self._handler = handler
        self._load = load
        self._serving: Optional[Serving] = None
        self._loading: Optional["concurrent.futures.Future[Serving]"] = None
        self._lock = threading.Lock()
        self._events: List[SlotEvent] = []
        self._refresher: Any = None

    def current(self) -> Optional[Serving]:
        """Returns the serving model, or None before the first one is ready."""
        return self._serving

    def serving(self, timeout: Optional[float] = None) -> Serving:
        """Returns the serving model, loading the handler's own model first if none is ready.

        Args:
            timeout: The most seconds to wait for a load; None waits as long as it takes.

        Raises:
            ModelLoadError: if the model cannot be loaded.
            TimeoutError: if the load takes longer than `timeout`.
        """
        serving = self._serving
        if serving is not None:
            return serving
        with self._lock:
            if self._serving is not None:
                return self._serving
            loading = self._loading
            if loading is None or (loading.done() and loading.exception() is not None):
                loading = start_in_thread(self._load_first, "liveinference-load-model")
                self._loading = loading
        return wait_for(loading, timeout, "loading the model")

    def swap(self, serving: Serving) -> Optional[Serving]:
        """Makes `serving` the model of every batch that starts from now on.

        Batches already running keep the model they started with. Returns the model that
        was serving, for the caller to drop.
        """
        with self._lock:
            previous, self._serving = self._serving, serving
        _LOG.info(
            "swapped model %s -> %s",
            previous.model_id if previous else None,
            serving.model_id,
        )
        return previous

    def start_refresher(self, make: Callable[[], Any]) -> None:
        """Starts `make()`'s refresher unless this slot already has one; any thread."""
        with self._lock:
            if self._refresher is not None:
                return
            self._refresher = make()
        self._refresher.start()

    def record(self, event: SlotEvent) -> None:
        """Queues a load report or a failed load for the processing thread; any thread."""
        with self._lock:
            self._events.append(event)

    def take_events(self) -> List[SlotEvent]:
        """Returns and forgets the events queued since the last call."""
        if not self._events:
            return []
        with self._lock:
            events, self._events = self._events, []
        return events

    def _load_first(self) -> Serving:
        self._handler.set_environment_vars()
        before = resident_bytes()
        started = time.perf_counter()
        try:
            model = self._load()
        except ModelLoadError:
            raise
        except Exception as error:
            raise ModelLoadError(
                f"cannot load the model of {type(self._handler).__name__}: "
                f"{type(error).__name__}: {error}"
            ) from error
        latency_ms = int((time.perf_counter() - started) * 1000)
        serving = Serving(None, model, self._handler)
        with self._lock:
            if self._serving is None:
                self._serving = serving
            self._events.append(
                LoadReport(None, "", latency_ms, max(0, resident_bytes() - before))
            )
            current = self._serving
        _LOG.info("loaded the first model in %d ms", latency_ms)
        return current
