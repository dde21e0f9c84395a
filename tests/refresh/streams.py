"""A steady stream of rows for streaming refresh tests, and how to read which models served it.

Tests act on the running pipeline when it reaches a state (`liveinference.testing.when`,
e.g. "10 predictions seen"), never after a fixed time. The stream itself still needs a
length; make it long enough that the test's steps fit well inside it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator, List, Tuple

import apache_beam as beam
import numpy
from apache_beam.transforms.periodicsequence import PeriodicImpulse

from liveinference.testing import read_collected

RATE_SECONDS = 0.05


def stream(
    pipeline: Any, rows: int, rate: float = RATE_SECONDS, label: str = "Rows"
) -> Tuple[beam.PCollection, float]:
    """Returns (a stream of about `rows` rows, one per `rate` seconds, its stop time).

    Each row holds its event time in feature 0, so results can be put back in stream order,
    and its index in the stream in feature 1, so a test can derive events from row N.
    """
    start = time.time() + 0.5
    stop = start + rows * rate
    pcoll = (
        pipeline
        | label >> PeriodicImpulse(start_timestamp=start, stop_timestamp=stop, fire_interval=rate)
        | f"{label}AsArrays" >> beam.Map(
            lambda t: numpy.array([float(t), float(round((float(t) - start) / rate)), 0.0, 0.0])
        )
    )
    return pcoll, stop


def _paced_rows(_: Any, rows: int, rate: float) -> Iterator[Any]:
    for index in range(rows):
        yield numpy.array([time.time(), float(index), 0.0, 0.0])
        time.sleep(rate)  # the pace of the live source, not a wait for anything


def paced_stream(
    pipeline: Any, rows: int, rate: float = RATE_SECONDS, label: str = "Rows"
) -> beam.PCollection:
    """`rows` rows, one per `rate` seconds, from when a worker starts reading, batch or streaming.

    Unlike `stream`, nothing is timed from when the pipeline is built: on a runner that starts
    late, the rows still arrive at their pace rather than all at once.
    """
    return (
        pipeline
        | f"{label}Start" >> beam.Create([None])
        | label >> beam.FlatMap(_paced_rows, rows, rate)
    )


def live(events: beam.PCollection, label: str = "Live") -> beam.PCollection:
    """`events` as an unbounded PCollection, as events read from Pub/Sub or Kafka are.

    RunInference swaps models by processing time for an unbounded `model_metadata_pcoll`
    (and by event time for a bounded one); the tests of live swaps derive their events from
    test streams that are bounded, so they flatten them with an empty unbounded source.
    """
    now = time.time()
    nothing = (
        events.pipeline
        | f"{label}Source" >> PeriodicImpulse(
            start_timestamp=now, stop_timestamp=now + 1, fire_interval=1
        )
        | f"{label}Nothing" >> beam.FlatMap(lambda _: [])
    )
    return (events, nothing) | f"{label}Events" >> beam.Flatten()


def seen(directory: Any, count: int) -> Callable[[], bool]:
    """A condition: at least `count` elements reached `Collect(directory)` (run_pipeline's)."""
    return lambda: len(read_collected(str(directory))) >= count


def by_time(results: List[Any]) -> List[Any]:
    """Results in stream order (plain PredictionResults)."""
    return sorted(results, key=lambda r: r.example[0])


def run_models(results: List[Any]) -> List[int]:
    """The sequence of distinct model labels predictions went through, in stream order."""
    runs: List[int] = []
    for result in by_time(results):
        label = int(result.inference)
        if not runs or runs[-1] != label:
            runs.append(label)
    return runs
