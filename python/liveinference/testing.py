"""Fakes and helpers for tests (ours and users'): the smallest real parts that show a behaviour.

- `ConstantModelHandler` loads a "model" that is a text file holding one integer label
  (`write_constant_model` writes one), and predicts it: a prediction names its model.
- `FaultOnMark` wraps any handler so that batches holding a marked example raise, run
  slowly, hang until released, or crash the process.
- `RecordingHandler` wraps any handler and appends a line per model load and per batch to
  files (seen across worker processes); `recorded_loads`, `recorded_batches` read them.
- `Collect` and `read_collected` write and read what reaches a sink, `query_metrics` reads
  a run's metrics; `wait_until` and `when` wait for a condition (N elements seen, a model
  served) with a deadline, never for a fixed time.
"""

from __future__ import annotations

import copy
import ctypes
import dataclasses
import faulthandler
import logging
import os
import pickle
import sys
import threading
import time
import uuid
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam

from liveinference.contract import Delegating, ModelHandler, PredictionResult
from liveinference.errors import ModelLoadError

__all__ = [
    "Collect",
    "ConstantModel",
    "ConstantModelHandler",
    "FaultOnMark",
    "MarkedRowError",
    "RecordingHandler",
    "Watcher",
    "is_marked",
    "query_metrics",
    "read_collected",
    "recorded_batches",
    "recorded_loads",
    "wait_until",
    "when",
    "write_constant_model",
]

_LOG = logging.getLogger(__name__)


class ConstantModel:
    """A model that predicts `label` for every example; loaded from `path`; weakref-able."""

    def __init__(self, label: int, path: str) -> None:
        self.label = label
        self.path = path

    def predict(self, examples: Sequence[Any]) -> List[int]:
        """Returns `label` once per example."""
        return [self.label] * len(examples)


def write_constant_model(path: str, label: int) -> str:
    """Writes a constant model file atomically (temporary name, then rename); returns `path`."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(temporary, "w") as file:
        file.write(f"{label}\n")
    os.replace(temporary, path)
    return path


class ConstantModelHandler(ModelHandler[Any, PredictionResult, ConstantModel]):
    """Loads a `ConstantModel` from a text file holding its label; results carry no model_id.

    Args:
        model_path: The file written by `write_constant_model`.
        batch_size: The batch size `BatchElements` aims for, if given (min = max).
    """

    def __init__(self, model_path: str, batch_size: Optional[int] = None) -> None:
        super().__init__()
        self._model_path = model_path
        self._batch_size = batch_size

    def load_model(self) -> ConstantModel:
        """Reads the label; raises ModelLoadError if the file is missing or holds no integer."""
        try:
            with open(self._model_path) as file:
                return ConstantModel(int(file.read().strip()), self._model_path)
        except (OSError, ValueError) as error:
            raise ModelLoadError(
                f"cannot load constant model {self._model_path!r}: {error}; write it with "
                "write_constant_model(path, label)"
            ) from error

    def run_inference(
        self,
        batch: Sequence[Any],
        model: ConstantModel,
        inference_args: Optional[Dict[str, Any]] = None,
    ) -> Iterable[PredictionResult]:
        """Returns `PredictionResult(example, model.label)` per example."""
        return [PredictionResult(example, label) for example, label in zip(batch, model.predict(batch))]

    def get_model_id(self) -> str:
        """Returns the model file's path."""
        return self._model_path

    def update_model_path(self, model_path: Optional[str] = None) -> None:
        """Points the handler at another model file; the next `load_model` reads it."""
        if model_path:
            self._model_path = model_path

    def batch_elements_kwargs(self) -> Dict[str, Any]:
        """Returns min = max = `batch_size` when one was given."""
        if self._batch_size is None:
            return {}
        return {"min_batch_size": self._batch_size, "max_batch_size": self._batch_size}


class MarkedRowError(ValueError):
    """Raised by a `FaultOnMark` handler on a batch that holds a marked example."""


def is_marked(example: Any, mark: Any) -> bool:
    """Returns True if `example` is `mark`, or its first value is (rows as arrays or lists)."""
    if isinstance(example, (int, float, str)):
        return example == mark
    try:
        return bool(example[0] == mark)
    except (TypeError, IndexError, KeyError):
        return False


class FaultOnMark(Delegating):
    """Runs `inner`, except on batches holding an example marked with `mark`.

    Args:
        inner: The handler that runs unmarked batches.
        mark: The value that marks an example (see `is_marked`).
        fault: What a marked batch does: "raise" (MarkedRowError), "slow" (sleeps
            `seconds` first, standing in for a slow model), "hang" (waits until `release`
            is set; in-process tests only, an Event does not pickle) or "crash" (the
            process dies of a segmentation fault).
        seconds: How long a "slow" batch takes.
        release: The event a "hang" batch waits for.

    Raises:
        ValueError: if `fault` is unknown, or "hang" is given without `release`.
    """

    FAULTS = ("raise", "slow", "hang", "crash")

    def __init__(
        self,
        inner: ModelHandler,
        mark: Any,
        fault: str = "raise",
        seconds: float = 0.0,
        release: Optional[threading.Event] = None,
    ) -> None:
        if fault not in self.FAULTS:
            raise ValueError(f"fault must be one of {self.FAULTS}, got {fault!r}")
        if fault == "hang" and release is None:
            raise ValueError("a 'hang' fault needs release=threading.Event() to end it")
        super().__init__(inner)
        self._mark = mark
        self._fault = fault
        self._seconds = seconds
        self._release = release

    def run_inference(
        self,
        batch: Sequence[Any],
        model: Any,
        inference_args: Optional[Dict[str, Any]] = None,
    ) -> Iterable[Any]:
        """Runs `inner` on the batch, after the fault if the batch holds a marked example.

        Raises:
            MarkedRowError: for the "raise" fault, naming the marked example.
        """
        marked = [example for example in batch if is_marked(example, self._mark)]
        if marked:
            self._strike(marked[0])
        return self._inner.run_inference(batch, model, inference_args)

    def __deepcopy__(self, memo: Dict[int, Any]) -> "FaultOnMark":
        """Copies the handler (as refresh does) sharing `release`: an Event cannot be copied."""
        clone = copy.copy(self)
        memo[id(self)] = clone
        for name, value in vars(self).items():
            setattr(clone, name, value if name == "_release" else copy.deepcopy(value, memo))
        return clone

    def _strike(self, example: Any) -> None:
        if self._fault == "raise":
            raise MarkedRowError(f"example {example!r} is marked {self._mark!r} to fail")
        if self._fault == "slow":
            time.sleep(self._seconds)
        elif self._fault == "hang":
            assert self._release is not None
            self._release.wait()
        else:
            faulthandler.disable()
            ctypes.string_at(0)


class RecordingHandler(Delegating):
    """Runs `inner`, appending "<pid>" per model load and "<pid> <size>" per batch to files.

    Files, not memory, so loads and batches are seen across threads and worker processes.

    Args:
        inner: The handler to run.
        log_dir: The directory of the `loads` and `batches` files (it must exist).
    """

    def __init__(self, inner: ModelHandler, log_dir: str) -> None:
        super().__init__(inner)
        self._log_dir = log_dir

    def _append(self, name: str, line: str) -> None:
        with open(os.path.join(self._log_dir, name), "a") as file:
            file.write(line + "\n")

    def load_model(self) -> Any:
        """Records the load, then loads `inner`'s model."""
        self._append("loads", str(os.getpid()))
        return self._inner.load_model()

    def run_inference(
        self,
        batch: Sequence[Any],
        model: Any,
        inference_args: Optional[Dict[str, Any]] = None,
    ) -> Iterable[Any]:
        """Records the batch's size, then runs `inner` on it."""
        self._append("batches", f"{os.getpid()} {len(batch)}")
        return self._inner.run_inference(batch, model, inference_args)


def recorded_loads(log_dir: str) -> List[int]:
    """Returns the pid of each load a `RecordingHandler` recorded in `log_dir`, in order."""
    return [int(fields[0]) for fields in _recorded(log_dir, "loads")]


def recorded_batches(log_dir: str) -> List[Tuple[int, int]]:
    """Returns (pid, batch size) of each batch a `RecordingHandler` recorded, in order."""
    return [(int(fields[0]), int(fields[1])) for fields in _recorded(log_dir, "batches")]


def _recorded(log_dir: str, name: str) -> List[List[str]]:
    path = os.path.join(log_dir, name)
    if not os.path.exists(path):
        return []
    with open(path) as file:
        return [line.split() for line in file if line.strip()]


class _CollectDoFn(beam.DoFn):
    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._items: List[Any] = []

    def start_bundle(self) -> None:
        self._items = []

    def process(self, element: Any) -> Iterator[Any]:
        self._items.append(element)
        yield from ()

    def finish_bundle(self) -> None:
        if self._items:
            path = os.path.join(self._directory, f"{uuid.uuid4().hex}.pkl")
            temporary = f"{path}.tmp"
            with open(temporary, "wb") as file:
                pickle.dump(self._items, file)
            os.replace(temporary, path)
            self._items = []


class Collect(beam.PTransform):
    """Writes every element to pickle files under `directory` (made if missing), per bundle.

    For runners whose workers share the file system; a test can wait on a running stream.
    """

    def __init__(self, directory: str) -> None:
        super().__init__()
        os.makedirs(directory, exist_ok=True)
        self._directory = directory

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return pcoll | beam.ParDo(_CollectDoFn(self._directory))


def read_collected(directory: str) -> List[Any]:
    """Returns every element `Collect(directory)` has written so far."""
    items: List[Any] = []
    if not os.path.isdir(directory):
        return items
    for name in sorted(os.listdir(directory)):
        if name.endswith(".pkl"):
            with open(os.path.join(directory, name), "rb") as file:
                items.extend(pickle.load(file))
    return items


def query_metrics(result: Any, namespace: str) -> Tuple[Dict[str, int], Dict[str, Any]]:
    """Returns ({counter: value}, {distribution: DistributionResult}) of `namespace`.

    Beam's local runner chains one lazy generator per bundle to merge metrics; a streaming
    run has many bundles, so reading them needs a deeper stack than Python's default.
    """
    from apache_beam.metrics.metric import MetricsFilter

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        query = result.metrics().query(MetricsFilter().with_namespace(namespace))
    finally:
        sys.setrecursionlimit(limit)
    counters = {c.key.metric.name: c.committed for c in query["counters"]}
    distributions = {d.key.metric.name: d.committed for d in query["distributions"]}
    return counters, distributions


def wait_until(
    condition: Callable[[], Any], timeout: float = 60.0, what: str = "the condition",
    every: float = 0.02,
) -> Any:
    """Calls `condition` every `every` seconds (50 times a second by default) until it returns
    a true value; returns that.

    Raises:
        TimeoutError: naming `what`, if it does not hold within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"waited {timeout}s for {what}; it never held")
        time.sleep(every)


@dataclasses.dataclass
class Watcher:
    """The outcome of `when`: `results` holds (unix time, value) of each action run, in
    order; `error` the exception that ended the steps early; `finished` is set at the end."""

    results: List[Tuple[float, Any]] = dataclasses.field(default_factory=list)
    error: Optional[BaseException] = None
    finished: threading.Event = dataclasses.field(default_factory=threading.Event)

    def join(self, timeout: float = 60.0) -> List[Tuple[float, Any]]:
        """Waits for the steps to finish and returns their results.

        Raises:
            TimeoutError: if they do not finish within `timeout` seconds.
            Exception: the error a step raised.
        """
        if not self.finished.wait(timeout):
            raise TimeoutError(f"the steps did not finish within {timeout}s")
        if self.error is not None:
            raise self.error
        return self.results


def when(
    steps: Sequence[Tuple[Callable[[], Any], Callable[[], Any]]], timeout: float = 60.0
) -> Watcher:
    """Runs each `(condition, action)` step on a daemon thread: waits for the condition, acts.

    Steps run in order; each condition gets its own `timeout`. Use it to act on a running
    pipeline when it reaches a state (e.g. drop a new model once 20 predictions are seen),
    rather than after a fixed time.

    Returns:
        A `Watcher` that fills in as the steps run.
    """
    watcher = Watcher()

    def run() -> None:
        try:
            for index, (condition, action) in enumerate(steps):
                wait_until(condition, timeout, f"the condition of step {index}")
                watcher.results.append((time.time(), action()))
        except BaseException as error:  # noqa: BLE001 - handed to join()
            _LOG.warning("a test step failed: %s", error)
            watcher.error = error
        finally:
            watcher.finished.set()

    threading.Thread(target=run, name="liveinference-test-steps", daemon=True).start()
    return watcher
