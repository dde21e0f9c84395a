"""The model a worker process serves: loaded once, shared by its threads, read once per batch."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import time
from typing import Any, Callable, List, Optional

import psutil

from liveinference.contract import ModelHandler
from liveinference.errors import ModelLoadError
from liveinference.timeouts import start_in_thread, wait_for

__all__ = ["LoadReport", "ModelSlot", "Serving"]

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Serving:
    """A loaded model, its id, and the handler that runs it: read as one reference.

    Attributes:
        model_id: The id predictions made by this model carry; None if unknown.
        model: The loaded model.
        handler: The handler that loaded it and runs it.
    """

    model_id: Optional[str]
    model: Any
    handler: ModelHandler


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What one model load cost.

    Attributes:
        model_id: The model loaded.
        latency_ms: How long the load took.
        byte_size: How much the process's resident memory grew (0 if it did not).
    """

    model_id: Optional[str]
    latency_ms: int
    byte_size: int


def _resident_bytes() -> int:
    return psutil.Process().memory_info().rss


class ModelSlot:
    """Holds the serving model of one worker process.

    The first caller of `serving()` loads the model; concurrent callers wait for that one
    load rather than starting their own. A failed load is remembered only until the next
    call, which tries again.

    Args:
        handler: The handler whose `load_model` makes the model.
        load: The function that loads it (the handler's, or a cross-process variant).
        model_id: The id of the model, if known.
    """

    def __init__(
        self, handler: ModelHandler, load: Callable[[], Any], model_id: Optional[str] = None
    ) -> None:
        self._handler = handler
        self._load = load
        self._model_id = model_id
        self._serving: Optional[Serving] = None
        self._loading: Optional["concurrent.futures.Future[Serving]"] = None
        self._lock = threading.Lock()
        self._reports: List[LoadReport] = []
        self.loads = 0

    def current(self) -> Optional[Serving]:
        """Returns the serving model, or None before the first load has finished."""
        return self._serving

    def serving(self, timeout: Optional[float] = None) -> Serving:
        """Returns the serving model, loading it first if none is loaded yet.

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
                loading = start_in_thread(self._load_now, "liveinference-load-model")
                self._loading = loading
        return wait_for(loading, timeout, f"loading model {self._model_id or ''}".strip())

    def take_reports(self) -> List[LoadReport]:
        """Returns and forgets the reports of loads finished since the last call."""
        if not self._reports:
            return []
        with self._lock:
            reports, self._reports = self._reports, []
        return reports

    def _load_now(self) -> Serving:
        self._handler.set_environment_vars()
        before = _resident_bytes()
        started = time.perf_counter()
        try:
            model = self._load()
        except ModelLoadError:
            raise
        except Exception as error:
            raise ModelLoadError(
                f"cannot load model {self._model_id or type(self._handler).__name__}: "
                f"{type(error).__name__}: {error}"
            ) from error
        latency_ms = int((time.perf_counter() - started) * 1000)
        report = LoadReport(self._model_id, latency_ms, max(0, _resident_bytes() - before))
        serving = Serving(self._model_id, model, self._handler)
        with self._lock:
            self._serving = serving
            self._reports.append(report)
            self.loads += 1
        _LOG.info("loaded model %s in %d ms", self._model_id, latency_ms)
        return serving
