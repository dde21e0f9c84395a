"""Rows per second through RunInference on the cluster: a batch job, one task per TaskManager.

Seeds fan out to random 4-feature rows, a Reshuffle spreads them over the workers, and
RunInference (scikit-learn, a constant classifier) scores them. Each worker records, per
bundle, how many predictions it made between which times; the rate is all rows over the
span from the first prediction to the last, so job start-up is not counted. Flink may place
both tasks of a batch job on one TaskManager (each has two slots): `rows_by_taskmanager` says
where the rows were scored. The workers import this module to run its functions.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import apache_beam as beam
import numpy
from apache_beam.transforms.window import GlobalWindows

from cluster.models import constant_classifier
from cluster.observe import WriteRecords, read_records, where
from cluster.pipelines import cluster_options
from cluster.state import ClusterState
from liveinference import RunInference
from liveinference.sklearn_inference import SklearnModelHandlerNumpy

__all__ = ["ROWS_PER_SEED", "measure"]

ROWS_PER_SEED = 5000


def _rows(seed: int) -> Iterator[numpy.ndarray]:
    yield from numpy.random.default_rng(seed).random((ROWS_PER_SEED, 4))


class _BundleCounts(beam.DoFn):
    """Records, per bundle, the worker, its number of predictions and their time span."""

    def setup(self) -> None:
        self._where = where()

    def start_bundle(self) -> None:
        self._count = 0
        self._first: Optional[float] = None

    def process(self, element: Any) -> Iterator[Any]:
        if self._first is None:
            self._first = time.time()
        self._count += 1
        yield from ()

    def finish_bundle(self) -> Optional[list]:
        if not self._count:
            return None
        record = {**self._where, "rows": self._count, "first": self._first, "last": time.time()}
        return [GlobalWindows.windowed_value(record)]


def measure(state: ClusterState, root: Path, rows: int, parallelism: int) -> Dict[str, Any]:
    """Runs the batch job on the cluster and returns its rate.

    Args:
        state: the running cluster.
        root: a local directory for the model and the records.
        rows: how many rows (rounded up to whole seeds of ROWS_PER_SEED).
        parallelism: Flink's parallelism (the number of TaskManagers, one task each).

    Returns:
        {"rows", "seconds", "rows_per_second", "rows_by_taskmanager", "job_seconds"}.
    """
    root.mkdir(parents=True, exist_ok=True)
    model = root / "model.pkl"
    model.write_bytes(pickle.dumps(constant_classifier(1)))
    seeds = -(-rows // ROWS_PER_SEED)
    out = root / "counts"
    pipeline = beam.Pipeline(options=cluster_options(state, parallelism, streaming=False))
    _ = (
        pipeline
        | beam.Create(range(seeds))
        | beam.FlatMap(_rows)
        | beam.Reshuffle()
        | RunInference(SklearnModelHandlerNumpy(str(model)))
        | beam.ParDo(_BundleCounts())
        | WriteRecords(str(out))
    )
    began = time.monotonic()
    pipeline.run().wait_until_finish()
    job_seconds = time.monotonic() - began
    records = read_records(str(out))
    total = sum(record["rows"] for record in records)
    span = max(r["last"] for r in records) - min(r["first"] for r in records)
    by_taskmanager: Dict[str, int] = {}
    for record in records:
        by_taskmanager[record["taskmanager"]] = (
            by_taskmanager.get(record["taskmanager"], 0) + record["rows"])
    return {"rows": total, "seconds": round(span, 3),
            "rows_per_second": round(total / span) if span > 0 else None,
            "rows_by_taskmanager": by_taskmanager, "job_seconds": round(job_seconds, 1)}
