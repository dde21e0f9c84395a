"""Which worker made a record, and a sink that writes records where the test process reads them.

Put `Observe()` right after RunInference (or after one of its dead-letter outputs): the runner
fuses it into the same stage, so the record names the SDK worker that ran the inference (its
TaskManager, pid and temp directory). `WriteRecords(directory)` writes each bundle's records
as one JSON-lines file, made visible by an atomic rename, so a reader polling the directory
never sees half a bundle. The directory must be one every worker can reach (on this machine's
cluster, a local path).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List

import apache_beam as beam

from cluster.config import TASKMANAGER_ENV
from liveinference import FailureRecord, PredictionResult

__all__ = ["Observe", "WriteRecords", "read_records", "to_plain", "where"]


def where() -> Dict[str, Any]:
    """The calling worker: its TaskManager, process id and temp directory."""
    return {
        "taskmanager": os.environ.get(TASKMANAGER_ENV, "none"),
        "pid": os.getpid(),
        "tmpdir": tempfile.gettempdir(),
    }


def to_plain(value: Any) -> Any:
    """`value` as JSON-able data (numpy arrays and scalars become lists and numbers)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


class Observe(beam.DoFn):
    """Turns predictions and dead letters into plain records naming the worker that made them.

    A `PredictionResult` becomes {"kind": "prediction", "example", "inference", "model_id"};
    a `FailureRecord` becomes {"kind": "failure", "element", "stage", "exception_type",
    "message", "model_id"}; both get "time" (Unix seconds) and the fields of `where()`.
    """

    def setup(self) -> None:
        """Reads the worker's identity once."""
        self._where = where()

    def process(self, element: Any) -> Iterator[Dict[str, Any]]:
        """Yields the record of one prediction or dead letter.

        Raises:
            TypeError: the element is neither a PredictionResult nor a FailureRecord.
        """
        if isinstance(element, PredictionResult):
            record = {"kind": "prediction", "example": to_plain(element.example),
                      "inference": to_plain(element.inference), "model_id": element.model_id}
        elif isinstance(element, FailureRecord):
            record = {"kind": "failure", "element": to_plain(element.element),
                      "stage": element.stage, "exception_type": element.exception_type,
                      "message": element.message, "model_id": element.model_id}
        else:
            raise TypeError(f"Observe takes PredictionResult or FailureRecord elements, got "
                            f"{type(element).__name__}; apply it right after RunInference")
        yield {**record, **self._where, "time": time.time()}


class _WriteBundles(beam.DoFn):
    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._lines: List[str] = []

    def start_bundle(self) -> None:
        self._lines = []

    def process(self, element: Dict[str, Any]) -> Iterator[Any]:
        self._lines.append(json.dumps(element))
        yield from ()

    def finish_bundle(self) -> None:
        if not self._lines:
            return
        name = uuid.uuid4().hex
        partial = os.path.join(self._directory, f".{name}.partial")
        with open(partial, "w") as file:
            file.write("\n".join(self._lines) + "\n")
        os.replace(partial, os.path.join(self._directory, f"{name}.jsonl"))
        self._lines = []


class WriteRecords(beam.PTransform):
    """Writes dict records as JSON lines under `directory`, one file per bundle.

    Args:
        directory: a local directory every worker can reach; made if missing.
    """

    def __init__(self, directory: str) -> None:
        super().__init__()
        os.makedirs(directory, exist_ok=True)
        self._directory = directory

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        """Applies the writer; the output is empty."""
        return pcoll | beam.ParDo(_WriteBundles(self._directory))


def read_records(directory: str) -> List[Dict[str, Any]]:
    """Every record `WriteRecords(directory)` has written so far (none if it does not exist)."""
    records: List[Dict[str, Any]] = []
    root = Path(directory)
    if not root.is_dir():
        return records
    for path in sorted(root.glob("*.jsonl")):
        records.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return records
