"""The model a worker process serves: one reference, read once per batch, swapped atomically.

`ServingModel` is that reference: the loaded model, its handler and its id. It is the one
place a prediction or a dead letter gets its model_id (`stamp`, `id_for`); handlers never
stamp. Nothing here keeps a model once it has been swapped out: the load of the first model
is forgotten when it finishes.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import time
from itertools import repeat
from typing import Any, Callable, Iterator, List, Optional, Sequence, Union

import psutil

from liveinference.contract import ModelHandler, ModelSet, is_prediction
from liveinference.deadletter import FailureRecord
from liveinference.errors import ModelLoadError
from liveinference.timeouts import start_in_thread, wait_for

__all__ = ["LoadReport", "ModelSlot", "ServingModel", "SlotEvent", "resident_bytes"]

_LOG = logging.getLogger(__name__)

_new = tuple.__new__


def _prediction_type(values: Sequence[Any]) -> Optional[type]:
    """The type of `values` if all are PredictionResults of one type, else None."""
    kinds = set(map(type, values))
    if len(kinds) != 1 or not is_prediction(values[0]):
        return None
    return kinds.pop()


@dataclasses.dataclass(frozen=True)
class ServingModel:
    """A loaded model, its id, and the handler that runs it: read as one reference.

    Attributes:
        model_id: The id predictions made by this model carry.
        model: The loaded model. A `ModelSet` (per-key models) names a model per key.
        handler: The handler that loaded it and runs it (a copy per refreshed version).
        model_name: The name that prefixes this model's metrics; "" for the first model.
    """

    model_id: str
    model: Any
    handler: ModelHandler
    model_name: str = ""

    def __post_init__(self) -> None:
        # Checked once here: a Protocol isinstance check is too slow for every element.
        model_set = self.model if isinstance(self.model, ModelSet) else None
        object.__setattr__(self, "_model_set", model_set)

    def id_for(self, element: Any) -> str:
        """Returns the id of the model that serves `element`.

        That is `model_id`, except for a `(key, example)` element of per-key models: then
        the id of its key's model (`model_id` if no model serves that key).
        """
        if isinstance(element, tuple) and len(element) == 2:
            return self._id_of_key(element[0])
        return self.model_id

    def stamp(self, results: List[Any]) -> List[Any]:
        """Returns `results` with each prediction naming the model that made it.

        A prediction is a `PredictionResult` (ours or Beam's) or a `(key,
        PredictionResult)` pair; its model_id is replaced whatever the handler put there.
        Other results pass unchanged.
        """
        if not results:
            return results
        # Batches are usually all of one shape: stamp them with C-level map/zip, not per
        # element in Python; anything else goes element by element.
        kind = _prediction_type(results)
        if kind is not None:
            examples, inferences, _ = zip(*results)
            return list(map(_new, repeat(kind), zip(examples, inferences, repeat(self.model_id))))
        if set(map(type, results)) == {tuple} and set(map(len, results)) == {2}:
            keys, predictions = zip(*results)
            kind = _prediction_type(predictions)
            if kind is not None:
                examples, inferences, _ = zip(*predictions)
                ids = (
                    map(self._id_of_key, keys)
                    if getattr(self, "_model_set") is not None
                    else repeat(self.model_id)
                )
                stamped: Iterator[Any] = map(_new, repeat(kind), zip(examples, inferences, ids))
                return list(zip(keys, stamped))
        return [self._stamped(result) for result in results]

    def _stamped(self, result: Any) -> Any:
        if is_prediction(result):
            return _new(type(result), (result[0], result[1], self.model_id))
        if isinstance(result, tuple) and len(result) == 2 and is_prediction(result[1]):
            key, prediction = result
            model_id = self._id_of_key(key)
            return (key, _new(type(prediction), (prediction[0], prediction[1], model_id)))
        return result

    def _id_of_key(self, key: Any) -> str:
        model_set: Optional[ModelSet] = getattr(self, "_model_set")
        if model_set is None:
            return self.model_id
        try:
            return model_set.model_id_for(key)
        except (KeyError, TypeError):  # no model serves the key, or it is not hashable
            return self.model_id


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What one successful model load cost.

    Attributes:
        model_id: The model loaded.
        model_name: Its metrics prefix.
        latency_ms: How long loading (and validating) took.
        byte_size: How much the process's resident memory grew (0 if it did not).
    """

    model_id: str
    model_name: str
    latency_ms: int
    byte_size: int


SlotEvent = Union[LoadReport, FailureRecord]


def resident_bytes() -> int:
    """Returns this process's resident memory in bytes."""
    return int(psutil.Process().memory_info().rss)


class ModelSlot:
    """Holds the serving model of one worker process, shared by all its threads.

    The first caller of `wait_for_model()` loads the first model; concurrent callers wait for
    that one load. With a refresher, the first model is the version its first poll loaded,
    if any (a worker that starts late serves what the others serve); else it is the handler's
    own. A refresher swaps later versions in with `swap()`. Loads, swaps and
    failures are queued as events for the processing thread to report (Beam's metrics and
    outputs are only reachable from there).

    Args:
        handler: The handler whose `load_model` makes the first model.
        load: The function that loads it (the handler's, or a cross-process variant).
    """

    def __init__(self, handler: ModelHandler, load: Callable[[], Any]) -> None:
        self._handler = handler
        self._load = load
        self._serving: Optional[ServingModel] = None
        self._loading: Optional["concurrent.futures.Future[ServingModel]"] = None
        self._lock = threading.Lock()
        self._events: List[SlotEvent] = []
        self._refresher: Any = None
        self._users = 0
        self._ever_used = False
        self.rollout: Any = None  # a rollout.state.RolloutState, when the step rolls out

    @property
    def first_model_id(self) -> str:
        """The id of the handler's own model, the first one this slot serves."""
        return self._handler.get_model_id()

    def model_id_for(self, element: Any) -> str:
        """Returns the id of the model that would serve `element` now; never loads.

        Before the first model is ready that is the handler's own model's id.
        """
        serving = self._serving
        return serving.id_for(element) if serving is not None else self.first_model_id

    def current(self) -> Optional[ServingModel]:
        """Returns the serving model, or None before the first one is ready; never loads."""
        return self._serving

    def wait_for_model(self, timeout: Optional[float] = None) -> ServingModel:
        """Returns the serving model, loading the first model if none is ready.

        A load that runs past `timeout` goes on; the next call waits for that same load.

        Args:
            timeout: The most seconds to wait for a load; None waits as long as it takes.

        Raises:
            Exception: whatever the handler's `load_model` raised (a `ModelLoadError`
                from the framework handlers), with a note naming the model.
            TimeoutError: if the load takes longer than `timeout`.
        """
        serving = self._serving
        if serving is not None:
            return serving
        with self._lock:
            if self._serving is not None:
                return self._serving
            loading = self._loading
            if loading is None:
                loading = start_in_thread(self._load_first, "liveinference-load-model")
                self._loading = loading
        return wait_for(loading, timeout, f"loading model {self.first_model_id}")

    def swap(self, serving: ServingModel) -> Optional[ServingModel]:
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
            refresher = self._refresher = make()
        refresher.start()

    def enable_rollout(self, make: Callable[[], Any]) -> None:
        """Gives the slot `make()`'s RolloutState unless it has one: the refresher then
        stages new versions there instead of swapping them in; any thread."""
        with self._lock:
            if self.rollout is None:
                self.rollout = make()

    @property
    def users(self) -> int:
        """How many DoFns serve from this slot now (set up and not torn down)."""
        return self._users

    def attach(self) -> None:
        """Counts one more DoFn serving from this slot (from its setup()); any thread."""
        with self._lock:
            self._users += 1
            self._ever_used = True

    def detach(self) -> None:
        """Counts one DoFn less (from its teardown()); any thread."""
        with self._lock:
            self._users = max(0, self._users - 1)

    def retire_refresher(self, refresher: Any) -> bool:
        """Forgets `refresher` if DoFns served from this slot and none does now; returns
        whether it did.

        A refresher that was retired ends; a DoFn set up later starts a new one.
        """
        with self._lock:
            if self._users or not self._ever_used:
                return False
            if self._refresher is refresher:
                self._refresher = None
            return True

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

    def _load_first(self) -> ServingModel:
        """Waits for the refresher's first poll, if the slot has a refresher; loads the
        handler's own model unless that poll swapped a version in. Forgets this load once
        it ends, either way.

        The finished load is dropped so it does not keep the first model alive after a
        swap; after a failure the next `wait_for_model` starts a new load.
        """
        model_id = self.first_model_id
        try:
            refresher = self._refresher
            if refresher is not None:
                refresher.wait_first_poll()
                with self._lock:
                    polled = self._serving
                if polled is not None:
                    return polled
            self._handler.set_environment_vars()
            before = resident_bytes()
            started = time.perf_counter()
            try:
                model = self._load()
            except Exception as error:
                # Raised as it is, as Beam raises it, so callers catch the handler's types.
                if not isinstance(error, ModelLoadError):
                    error.add_note(
                        f"raised loading model {model_id!r} of {type(self._handler).__name__}"
                    )
                raise
            latency_ms = int((time.perf_counter() - started) * 1000)
            serving = ServingModel(model_id, model, self._handler)
            with self._lock:
                if self._serving is None:
                    self._serving = serving
                self._events.append(
                    LoadReport(model_id, "", latency_ms, max(0, resident_bytes() - before))
                )
                current = self._serving
            _LOG.info("loaded the first model %s in %d ms", model_id, latency_ms)
            return current
        finally:
            with self._lock:
                self._loading = None
