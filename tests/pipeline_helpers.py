"""Run a pipeline and read back what reached its sinks, on any runner that shares /tmp."""

from __future__ import annotations

import os
import pickle
import sys
import uuid
from typing import Any, Dict, Iterator, List, Tuple

import apache_beam as beam

__all__ = ["Collect", "query_metrics", "read_collected"]


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
