"""The streaming refresh pipeline the cluster tests and benchmark run, and its options.

It lives in an importable module (not a test file) because the SDK workers beside each
TaskManager unpickle its functions by reference: they import `cluster.pipelines`.

Shape: PeriodicImpulse (row i at start + i * interval) -> rows [i, 0, 0, 0] -> Reshuffle (so
both TaskManagers get rows) -> RunInference(dead letters on) -> `Observe` -> JSON-lines records
under `out/predictions`, `out/failed_inferences`, `out/failed_model_loads`.

RunInference learns of new versions in one of two modes:
- watch: every worker polls a file pattern (`Place.pattern`);
- event: the pipeline's own source of announcements (`ListAnnouncements` over
  `Place.announcements`, standing in for a Pub/Sub subscription) feeds `model_metadata_pcoll`,
  and the event channel (`Place.channel`) relays each event to every worker.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterator, List, Sequence

import apache_beam as beam
import numpy
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.periodicsequence import PeriodicImpulse

from cluster.observe import Observe, WriteRecords
from cluster.places import Place
from cluster.state import ClusterState
from liveinference import ModelMetadata, RunInference
from liveinference.sklearn_inference import SklearnModelHandlerNumpy

__all__ = ["MODES", "OUTPUTS", "ListAnnouncements", "RowOf", "StreamSpec", "cluster_options",
           "refresh_pipeline"]

MODES = ("watch", "event")

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


class ListAnnouncements(beam.DoFn):
    """On each tick of a PeriodicImpulse, yields the announcements that appeared in its slot.

    Tick t covers the announcement files (JSON: model_path, model_name) modified in
    (t - every - lag, t - lag]: the slots do not overlap, so each file is announced once
    without keeping state, and the lag leaves time for the store's listing (object stores
    give whole seconds) to show a file before its slot is looked at.

    Args:
        pattern: the announcement files.
        every: seconds between ticks.
        lag: seconds a slot is looked at after it ends.
    """

    def __init__(self, pattern: str, every: float, lag: float = 3.0) -> None:
        self._pattern = pattern
        self._every = every
        self._lag = lag

    def process(self, tick: Any) -> Iterator[ModelMetadata]:
        """Yields the ModelMetadata of each announcement in the tick's slot."""
        end = float(tick) - self._lag
        for found in FileSystems.match([self._pattern])[0].metadata_list:
            if end - self._every < found.last_updated_in_seconds <= end:
                with FileSystems.open(found.path) as file:
                    fields = json.loads(file.read())
                yield ModelMetadata(fields["model_path"], fields.get("model_name") or "")


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


def cluster_options(state: ClusterState, parallelism: int = 2, flags: Sequence[str] = (),
                    streaming: bool = True) -> PipelineOptions:
    """Options that submit to the cluster's job server with PROCESS workers.

    Args:
        state: the running cluster.
        parallelism: Flink's parallelism (2: one task per TaskManager).
        flags: more options as flags, e.g. ["--checkpointing_interval=1000"] (Flink runner
            options the job server describes are accepted too).
        streaming: a streaming job (else a batch job).
    """
    return PipelineOptions(
        list(flags), runner="PortableRunner", job_endpoint=state.job_endpoint,
        environment_type="PROCESS", environment_config=state.environment_config(),
        streaming=streaming, parallelism=parallelism,
    )


def stream_rows(pipeline: beam.Pipeline, spec: StreamSpec) -> beam.PCollection:
    """The stream's numbered feature rows (`RowOf`), reshuffled so that every worker gets some."""
    return (
        pipeline
        | PeriodicImpulse(start_timestamp=spec.start, stop_timestamp=spec.stop,
                          fire_interval=spec.interval)
        | beam.ParDo(RowOf(spec.start, spec.interval))
        | beam.Reshuffle()
    )


def refresh_pipeline(pipeline: beam.Pipeline, spec: StreamSpec, place: Place, out_dir: str,
                     mode: str = "watch", poll_seconds: float = 0.5) -> None:
    """Builds the stream -> RunInference -> records pipeline on `pipeline`.

    Args:
        pipeline: an empty pipeline (e.g. with `cluster_options`).
        spec: the stream.
        place: where the models (the first is `v1.pkl`), announcements and channel are.
        out_dir: where records go, one sub-directory per name in `OUTPUTS`.
        mode: "watch" or "event" (see the module's docstring).
        poll_seconds: how often workers poll the pattern or channel, and the source its
            announcements.

    Raises:
        ValueError: an unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    rows = stream_rows(pipeline, spec)
    handler = SklearnModelHandlerNumpy(place.uri("v1.pkl"))
    if mode == "watch":
        inference = RunInference(handler, watch_model_pattern=place.pattern,
                                 interval=poll_seconds)
    else:
        announced = (
            pipeline
            | "Ticks" >> PeriodicImpulse(start_timestamp=spec.start, stop_timestamp=spec.stop,
                                         fire_interval=1.0)
            | beam.ParDo(ListAnnouncements(place.announcements, every=1.0))
        )
        inference = RunInference(handler, model_metadata_pcoll=announced,
                                 refresh_channel=place.channel, interval=poll_seconds)
    results, dead = rows | inference.with_exception_handling()
    outputs: List[Any] = [results, dead.failed_inferences, dead.failed_model_loads]
    for name, pcoll in zip(OUTPUTS, outputs):
        _ = (pcoll | f"Observe {name}" >> beam.ParDo(Observe())
             | f"Write {name}" >> WriteRecords(os.path.join(out_dir, name)))
