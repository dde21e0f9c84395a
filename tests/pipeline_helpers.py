"""Run a pipeline and read back what reached its sinks, on any runner that shares /tmp."""

from __future__ import annotations

import os
import pickle
import uuid
from typing import Any, Iterator, List

import apache_beam as beam

__all__ = ["Collect", "read_collected"]


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
            with open(path, "wb") as file:
                pickle.dump(self._items, file)
            self._items = []


class Collect(beam.PTransform):
    """Writes every element to pickle files under `directory` (made if missing)."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        os.makedirs(directory, exist_ok=True)
        self._directory = directory

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return pcoll | beam.ParDo(_CollectDoFn(self._directory))


def read_collected(directory: str) -> List[Any]:
    """Returns every element written by `Collect(directory)`."""
    items: List[Any] = []
    if not os.path.isdir(directory):
        return items
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as file:
            items.extend(pickle.load(file))
    return items
