"""A mid-stream model swap driven by events, for the framework refresh tests.

The stream is paced rows that keep coming until the test says stop, so a slow start or a
slow load under a busy machine only makes the run longer, never wrong:

1. rows flow; once `SEEN_BEFORE_DROP` predictions were collected, the second model is
   renamed into the watched folder (and, in event mode, announced by a ModelMetadata
   event once it landed);
2. once `SEEN_AFTER_SWAP` predictions of the second model were collected, the stream stops.

Each step waits up to `DEADLINE` seconds; the stream ends by itself after `MOST_ROWS` rows.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.utils.timestamp import Duration

from liveinference import ModelMetadata, RunInference
from liveinference.testing import read_collected, when

RATE = 0.1              # seconds between rows
MOST_ROWS = 3000        # the stream's own end, should a stop never come
DEADLINE = 300.0        # seconds each step may wait for its event
SEEN_BEFORE_DROP = 5    # predictions of the first model before the second lands
SEEN_AFTER_SWAP = 5     # predictions of the second model before the stream stops
POLL = 0.2              # RunInference's watch interval
LABELS = (1, 2)         # what the first and the second model answer


@dataclasses.dataclass(frozen=True)
class Case:
    """How one handler is fed and read.

    Attributes:
        handler: Builds the handler serving the first model, from its path.
        example: The i-th example of the stream.
        index: Recovers i from an example.
        label: Which model's answer (1 or 2) an inference is.
    """

    handler: Callable[[str], Any]
    example: Callable[[int], Any]
    index: Callable[[Any], int]
    label: Callable[[Any], int]


@dataclasses.dataclass(frozen=True)
class Models:
    """The first model's path, and a second one (file or directory) to drop in later."""

    first: str
    second: str


def save_pair(root: Any, name: str, save: Callable[[str, int], None]) -> Models:
    """Saves models answering 1 and 2 as root/v1{name} and root/v2{name}."""
    paths = [str(root / f"v{label}{name}") for label in LABELS]
    for path, label in zip(paths, LABELS):
        save(path, label)
    return Models(*paths)


class _Positions(RestrictionProvider):
    def __init__(self, most: int) -> None:
        self._most = most

    def initial_restriction(self, element: Any) -> OffsetRange:
        return OffsetRange(0, self._most)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, element: Any, restriction: OffsetRange) -> int:
        return restriction.size()


class _PacedRows(beam.DoFn):
    """Emits 0, 1, 2, ... one per `rate` seconds, once `start_flag` exists (if given),
    until `stop_flag` exists or `most` rows were emitted. One row per call, then the rest is
    deferred, so each row reaches the next step at once."""

    def __init__(self, rate: float, most: int, stop_flag: str, start_flag: Optional[str]) -> None:
        self._rate, self._most = rate, most
        self._stop_flag, self._start_flag = stop_flag, start_flag

    @beam.DoFn.unbounded_per_element()
    def process(
        self, element: Any, tracker: Any = beam.DoFn.RestrictionParam(_Positions(MOST_ROWS))
    ) -> Any:
        index, end = tracker.current_restriction().start, tracker.current_restriction().stop
        if os.path.exists(self._stop_flag) or index >= min(end, self._most):
            tracker.try_claim(end - 1)  # claims the rest: the stream ends here
            return
        if index > 0 or self._start_flag is not None:
            time.sleep(self._rate)  # the stream's pace (the runner resumes a deferral at once)
        if self._start_flag is None or os.path.exists(self._start_flag):
            if not tracker.try_claim(index):
                return
            yield index
        tracker.defer_remainder(Duration(seconds=0))


def paced_rows(
    pipeline: Any,
    label: str,
    stop_flag: str,
    start_flag: Optional[str] = None,
    most: int = MOST_ROWS,
) -> beam.PCollection:
    """Returns a stream of 0, 1, 2, ... (one per RATE seconds) that ends when `stop_flag`
    exists or after `most` rows; with `start_flag`, it begins once that file exists."""
    return (
        pipeline
        | f"{label}Impulse" >> beam.Impulse()
        | label >> beam.ParDo(_PacedRows(RATE, most, stop_flag, start_flag))
    )


def _drop(source: str, watched: str, staging: str) -> str:
    """Copies `source` to staging, then renames it into `watched`, so it appears complete."""
    name = os.path.basename(source)
    staged = os.path.join(staging, name)
    if os.path.isdir(source):
        shutil.copytree(source, staged)
    else:
        shutil.copyfile(source, staged)
    target = os.path.join(watched, name)
    os.replace(staged, target)
    return target


def run_swap(
    run_pipeline: Any, tmp_path: Any, case: Case, models: Models, pattern: str, events: bool = False
) -> Tuple[List[Any], str]:
    """Streams `case`'s examples through RunInference on `models.first`; drops the second.

    The second model is renamed into a watched folder once the first served
    SEEN_BEFORE_DROP predictions; RunInference watches `pattern` there, or, with `events`,
    is told of the second model by a ModelMetadata event once it landed. The stream stops
    once the second served SEEN_AFTER_SWAP predictions.

    Returns:
        The results in stream order and the second model's id.
    """
    watched, staging = tmp_path / "watched", tmp_path / "staging"
    watched.mkdir()
    staging.mkdir()
    second = str(watched / os.path.basename(models.second))
    dropped, stop = str(tmp_path / "dropped"), str(tmp_path / "stop")
    collected = str(tmp_path / "out" / "results")

    def land() -> str:
        target = _drop(models.second, str(watched), str(staging))
        open(dropped, "w").close()
        return target

    def served_by_second() -> bool:
        return sum(r.model_id == second for r in read_collected(collected)) >= SEEN_AFTER_SWAP

    steps = when([
        (lambda: len(read_collected(collected)) >= SEEN_BEFORE_DROP, land),
        (served_by_second, lambda: open(stop, "w").close()),
    ], timeout=DEADLINE)

    def build(p: Any) -> Dict[str, Any]:
        if events:
            announced = paced_rows(p, "Announce", stop, start_flag=dropped, most=1) | (
                "AsMetadata" >> beam.Map(lambda _: ModelMetadata(second, "v2"))
            )
            refresh: Dict[str, Any] = {"model_metadata_pcoll": announced}
        else:
            refresh = {"watch_model_pattern": str(watched / pattern)}
        rows = paced_rows(p, "Rows", stop) | "Examples" >> beam.Map(case.example)
        results, dlq = rows | RunInference(
            case.handler(models.first), interval=POLL, **refresh
        ).with_exception_handling()
        return {
            "results": results, "failed": dlq.failed_inferences, "loads": dlq.failed_model_loads
        }

    out = run_pipeline(build, streaming=True)
    [(_, landed), (_, _)] = steps.join(timeout=DEADLINE)
    assert landed == second
    assert out["failed"] == [] and out["loads"] == []
    results = sorted(out["results"], key=lambda r: case.index(r.example))
    assert [case.index(r.example) for r in results] == list(range(len(results)))
    return results, second


def check_swap(results: List[Any], case: Case, first: str, second: str) -> None:
    """The first model served, then the second, each answering as it should."""
    runs: List[str] = []
    for result in results:
        if not runs or runs[-1] != result.model_id:
            runs.append(result.model_id)
    assert runs == [first, second]
    answers = {first: LABELS[0], second: LABELS[1]}
    wrong = [
        (result.model_id, case.label(result.inference))
        for result in results
        if case.label(result.inference) != answers[result.model_id]
    ]
    assert wrong == []


def assert_swaps(
    run_pipeline: Any, tmp_path: Any, case: Case, models: Models, pattern: str, events: bool = False
) -> None:
    """Runs the swap and checks that the first model served, then the second."""
    results, second = run_swap(run_pipeline, tmp_path, case, models, pattern, events)
    check_swap(results, case, models.first, second)
