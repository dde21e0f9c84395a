"""The streaming refresh pipeline the cluster tests and benchmark run, and its options.

It lives in an importable module (not a test file) because the SDK workers beside each
TaskManager unpickle its functions by reference: they import `cluster.pipelines`.

Shape: PeriodicImpulse (row i at start + i * interval) -> rows [i, 0, 0, 0] -> Reshuffle (so
both TaskManagers get rows) -> RunInference(watch mode, dead letters on) -> `Observe` ->
JSON-lines records under `out/predictions`, `out/failed_inferences`, `out/failed_model_loads`.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, List, Sequence

import apache_beam as beam
import numpy
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.periodicsequence import PeriodicImpulse

from cluster.observe import Observe, WriteRecords
from cluster.state import ClusterState
from liveinference import RunInference
from liveinference.sklearn_inference import SklearnModelHandlerNumpy

__all__ = ["OUTPUTS", "RowOf", "StreamSpec", "cluster_options", "refresh_pipeline"]

OUTPUTS = ("predictions", "failed_inferences", "failed_model_loads")


class RowOf(beam.DoFn):
    """Turns the i-th timestamp of a PeriodicImpulse into the row [i, 0, 0, 0]."""

    def __init__(self, start: float, interval: float) -> None:
        self._start = start
        self._interval = interval

    def process(self, timestamp: Any) -> Iterator[numpy.ndarray]:
        """Yields the row whose first feature is the element's index in the stream."""
        index = round((float(timestamp) - self._start) / self._interval)
        yield numpy.array([float(index), 0.0, 0.0, 0.0])


class StreamSpec:
    """When the stream starts, how fast it goes and the most rows it may emit.

    Args:
        start: Unix time of row 0.
        interval: seconds between rows.
        rows: an upper bound; a run normally ends earlier, at a cut-off its driver picks.
    """

    def __init__(self, start: float, interval: float, rows: int) -> None:
        self.start = start
        self.interval = interval
        self.rows = rows

    @property
    def stop(self) -> float:
        """PeriodicImpulse's stop timestamp (exclusive), half an interval past the last row."""
        return self.start + (self.rows - 0.5) * self.interval

    def rows_until(self, moment: float) -> int:
        """How many rows the source has emitted by Unix time `moment` (rows 0 .. n - 1)."""
        if moment < self.start:
            return 0
        return min(self.rows, int((moment - self.start) / self.interval) + 1)


def cluster_options(state: ClusterState, parallelism: int = 2,
                    flags: Sequence[str] = ()) -> PipelineOptions:
    """Streaming options that submit to the cluster's job server with PROCESS workers.

    Args:
        state: the running cluster.
        parallelism: Flink's parallelism (2: one task per TaskManager).
        flags: more options as flags, e.g. ["--checkpointing_interval=1000"] (Flink runner
            options the job server describes are accepted too).
    """
    return PipelineOptions(
        list(flags), runner="PortableRunner", job_endpoint=state.job_endpoint,
        environment_type="PROCESS", environment_config=state.environment_config(),
        streaming=True, parallelism=parallelism,
    )


def refresh_pipeline(pipeline: beam.Pipeline, spec: StreamSpec, model_uri: str,
                     pattern: str, out_dir: str, poll_seconds: float = 0.5) -> None:
    """Builds the stream -> RunInference(watch `pattern`) -> records pipeline on `pipeline`.

    Args:
        pipeline: an empty pipeline (e.g. with `cluster_options`).
        spec: the stream.
        model_uri: the model every worker starts with.
        pattern: the file pattern every worker polls for new versions.
        out_dir: where records go, one sub-directory per name in `OUTPUTS`.
        poll_seconds: the watch interval.
    """
    rows = (
        pipeline
        | PeriodicImpulse(start_timestamp=spec.start, stop_timestamp=spec.stop,
                          fire_interval=spec.interval)
        | beam.ParDo(RowOf(spec.start, spec.interval))
        | beam.Reshuffle()
    )
    results, dead = rows | RunInference(
        SklearnModelHandlerNumpy(model_uri), watch_model_pattern=pattern, interval=poll_seconds
    ).with_exception_handling()
    outputs: List[Any] = [results, dead.failed_inferences, dead.failed_model_loads]
    for name, pcoll in zip(OUTPUTS, outputs):
        _ = (pcoll | f"Observe {name}" >> beam.ParDo(Observe())
             | f"Write {name}" >> WriteRecords(os.path.join(out_dir, name)))
