"""Safe rollout: a worse model is rolled back by late labels, then a better one is promoted.

A stream of rows goes through RunInference on Prism (streaming) with `with_rollout`: a new
model version first serves a share of the rows as canary, and labels for the rows arrive on
their own stream a second later. The demo starts on a logistic regression (v1), then drops
a model trained on the wrong rule (v2: it loads, passes its canary examples and answers
every row, but wrongly), and, once v2 is rolled back by its accuracy on the labels, a
gradient-boosted model (v3), which is promoted. It prints each rollout event, a summary of
the predictions per model and role, and, as its last line, the summary as JSON.

    make prism   # once: the Prism runner
    PYTHONPATH=python python examples/rollout.py [--rows 1500] [--canary-share 0.2]
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import pickle
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import apache_beam as beam
import numpy
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples import xlang_runtime  # noqa: E402
from liveinference import RunInference  # noqa: E402
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy  # noqa: E402
from liveinference.rollout.labels import JoinLabels  # noqa: E402
from liveinference.rollout.policy import RolloutGates  # noqa: E402
from liveinference.rollout.roles import CANARY, role_of  # noqa: E402
from liveinference.testing import Collect, read_collected  # noqa: E402

FEATURES = 4
TICK_SECONDS = 0.05
LABEL_DELAY_SECONDS = 1.0
LABEL_HORIZON_SECONDS = 2.0
DEMO_ROWS_PER_TICK = 2


def features(index: int) -> numpy.ndarray:
    """Row `index`: its id in column 0, then FEATURES features drawn from its own seed."""
    drawn = numpy.random.default_rng(index).normal(size=FEATURES)
    return numpy.concatenate([[float(index)], drawn])


def true_label(row: numpy.ndarray) -> int:
    """The rule the data follows; it has an interaction a straight line misses."""
    x = numpy.asarray(row)[1:]
    return int(x[0] + x[1] + 1.5 * x[2] * x[3] > 0)


def row_id(example: numpy.ndarray) -> int:
    """The id a prediction's example and its label are joined by."""
    return int(example[0])


def train(directory: str) -> Dict[str, str]:
    """Trains v1 (stable), v2 (worse: the wrong rule) and v3 (better); returns their paths,
    v1 in `directory`, the others beside it, to be dropped into the watched folder later."""
    x = numpy.stack([features(index) for index in range(10**6, 10**6 + 3000)])
    right = numpy.array([true_label(row) for row in x])
    wrong = (x[:, 1] - x[:, 2] > 0).astype(int)
    drop_id = ColumnTransformer([("features", "passthrough", list(range(1, FEATURES + 1)))])
    models = {
        "v1.pkl": make_pipeline(drop_id, LogisticRegression()).fit(x, right),
        "v2.pkl": make_pipeline(drop_id, LogisticRegression()).fit(x, wrong),
        "v3.pkl": make_pipeline(drop_id, GradientBoostingClassifier(random_state=0)).fit(x, right),
    }
    paths = {}
    for name, model in models.items():
        paths[name] = os.path.join(directory, name)
        with open(paths[name], "wb") as file:
            pickle.dump(model, file)
    return paths


def _rows_at(tick: Any, start: float, per_tick: int, delay: float = 0.0) -> List[int]:
    first = round((float(tick) - delay - start) / TICK_SECONDS) * per_tick
    return list(range(first, first + per_tick))


def _labels_of(tick: Any, start: float, per_tick: int, labelled_share: float) -> List[Any]:
    """The labels of the rows of the tick LABEL_DELAY_SECONDS ago, for `labelled_share`."""
    indexes = _rows_at(tick, start, per_tick, LABEL_DELAY_SECONDS)
    kept = [index for index in indexes if (index * 7919) % 100 < labelled_share * 100]
    return [(index, true_label(features(index))) for index in kept]


class Milestones(logging.Handler):
    """Keeps liveinference's log lines with their times; `wait` blocks until one appears."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: List[Tuple[float, str]] = []
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.lines.append((record.created, record.getMessage()))
            self._changed.notify_all()

    def wait(self, timeout: float, *parts: str) -> float:
        """Waits for a line holding every one of `parts`; returns the time it was logged.

        Raises:
            TimeoutError: if none is logged within `timeout` seconds.
        """
        def first() -> Optional[float]:
            return next((at for at, line in self.lines if all(p in line for p in parts)), None)

        with self._changed:
            if not self._changed.wait_for(lambda: first() is not None, timeout):
                raise TimeoutError(f"no log line with {parts} within {timeout}s")
            return first()  # type: ignore[return-value]


def _drive(log: Milestones, paths: Dict[str, str], watched: str, events: Dict[str, Any]) -> None:
    """Drops v2 once v1 serves, v3 once v2 is rolled back; notes when each thing happened."""
    try:
        log.wait(120, "loaded the first model")
        events["v2_dropped"] = _drop(paths["v2.pkl"], watched)
        events["v2_canary"] = log.wait(120, "v2.pkl starts as")
        events["v2_rolled_back"] = log.wait(300, "rollback model", "v2.pkl")
        events["v3_dropped"] = _drop(paths["v3.pkl"], watched)
        events["v3_canary"] = log.wait(120, "v3.pkl starts as")
        events["v3_promoted"] = log.wait(300, "promote model", "v3.pkl")
    except TimeoutError as error:
        events["error"] = str(error)


def _drop(path: str, watched: str) -> float:
    """Moves a model file into the watched folder in one rename; returns when."""
    os.replace(path, os.path.join(watched, os.path.basename(path)))
    return time.time()


def run_rollout(
    work: str, rows: int, canary_share: float, min_predictions: int, per_tick: int = 1,
    labelled_share: float = 0.8,
) -> Dict[str, Any]:
    """Runs the rollout on Prism and returns its summary (see `summarize`).

    Args:
        work: An empty folder for models and outputs.
        rows: Rows in the stream (one tick per TICK_SECONDS, `per_tick` rows each).
        canary_share: The share of rows a new version serves as canary.
        min_predictions: The gate window: canary predictions before a decision; half as
            many (at least 20) of them, and of the stable model's, must meet their labels.
        per_tick: Rows per tick.
        labelled_share: The share of rows whose label arrives.

    Returns:
        The summary; its "error" names a rollout step that did not happen in time.
    """
    watched = os.path.join(work, "watched")
    os.makedirs(watched)
    paths = train(work)
    log, events = Milestones(), {}  # type: Milestones, Dict[str, Any]
    logger = logging.getLogger("liveinference")
    logger.setLevel(logging.INFO)
    logger.addHandler(log)
    logger.propagate = False
    gates = RolloutGates(min_predictions=min_predictions, max_accuracy_drop=0.05,
                         min_labelled=max(20, min_predictions // 2))
    driver = threading.Thread(target=_drive, args=(log, paths, watched, events), daemon=True)
    with xlang_runtime.start_prism(Path(work)) as prism:
        options = PipelineOptions(runner="PortableRunner", job_endpoint=prism.address,
                                  environment_type="LOOPBACK", streaming=True,
                                  job_server_timeout=3600)
        pipeline = beam.Pipeline(options=options)
        start = time.time() + 2
        stop = start + TICK_SECONDS * -(-rows // per_tick)
        ticks = pipeline | "Ticks" >> PeriodicImpulse(start, stop, TICK_SECONDS)
        indexes = ticks | "Indexes" >> beam.FlatMap(_rows_at, start, per_tick)
        stream = indexes | "Rows" >> beam.Map(features)
        late = (
            pipeline
            | "LabelTicks" >> PeriodicImpulse(start + LABEL_DELAY_SECONDS,
                                              stop + LABEL_DELAY_SECONDS, TICK_SECONDS)
            | "Labels" >> beam.FlatMap(_labels_of, start, per_tick, labelled_share)
        )
        results, dlq = stream | RunInference(
            SklearnModelHandlerNumpy(paths["v1.pkl"], max_batch_size=32),
            watch_model_pattern=os.path.join(watched, "*.pkl"), interval=0.2,
        ).with_model_validation(canary_examples=[features(0)]).with_rollout(
            canary_share, gates=gates, decide_every=4,
            labels=JoinLabels(late, row_id, LABEL_HORIZON_SECONDS),
        ).with_exception_handling()
        outputs = {"in": indexes, "results": results, "dead": dlq.failed_inferences,
                   "loads": dlq.failed_model_loads}
        for name, pcoll in outputs.items():
            _ = pcoll | f"Collect{name}" >> Collect(os.path.join(work, "out", name))
        driver.start()
        pipeline.run().wait_until_finish()
    logger.removeHandler(log)
    logger.propagate = True
    collected = {name: read_collected(os.path.join(work, "out", name)) for name in outputs}
    return summarize(collected, events, log)


def summarize(
    collected: Dict[str, list], events: Dict[str, Any], log: Milestones
) -> Dict[str, Any]:
    """The run's numbers: rows in and out, predictions per model and role, what was promoted
    and rolled back, rows the worse model answered before its rollback, each model's
    accuracy on the rows and the seconds from the worse model's start to its rollback."""
    name = os.path.basename
    results = collected["results"]
    per_model_role = collections.Counter(f"{name(r.model_id)}/{role_of(r)}" for r in results)
    right: Dict[str, List[int]] = collections.defaultdict(lambda: [0, 0])
    for result in results:
        tally = right[name(result.model_id)]
        tally[0] += int(result.inference) == true_label(result.example)
        tally[1] += 1
    promoted = list(dict.fromkeys(
        name(line.split("promote model ")[1].split(":")[0])
        for _, line in log.lines if line.startswith("promote model ")
    ))
    rolled_back = [name(r.model_id) for r in collected["loads"] if r.stage == "rollout"]
    started, ended = events.get("v2_canary"), events.get("v2_rolled_back")
    return {
        "rows_in": len(collected["in"]),
        "rows_out": len(results),
        "dead_letters": len(collected["dead"]),
        "promoted": promoted,
        "rolled_back": rolled_back,
        "rows_before_rollback": sum(
            name(r.model_id) == "v2.pkl" and role_of(r) == CANARY for r in results
        ),
        "seconds_to_rollback": round(ended - started, 2) if started and ended else None,
        "seconds_to_promote": (round(events["v3_promoted"] - events["v3_canary"], 2)
                               if "v3_promoted" in events else None),
        "predictions": dict(sorted(per_model_role.items())),
        "accuracy": {model: round(n / total, 3) for model, (n, total) in sorted(right.items())},
        "rollback_reason": next((r.message.split(": ")[1].split("; numbers")[0]
                                 for r in collected["loads"] if r.stage == "rollout"), None),
        "error": events.get("error"),
    }


def main() -> int:
    """Runs the demo, prints its events and summary; returns 0 when every row is accounted
    for, v2 was rolled back and v3 promoted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--canary-share", type=float, default=0.25)
    parser.add_argument("--min-predictions", type=int, default=60)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    warnings.filterwarnings("ignore", module="apache_beam.transforms.util")  # batch sizing fits
    with tempfile.TemporaryDirectory(prefix="liveinference-rollout-") as work:
        rate = DEMO_ROWS_PER_TICK / TICK_SECONDS
        print(f"streaming {args.rows} rows ({rate:.0f} a second) on Prism; a new version "
              f"serves {args.canary_share:g} of them as canary", flush=True)
        summary = run_rollout(work, args.rows, args.canary_share, args.min_predictions,
                              per_tick=DEMO_ROWS_PER_TICK)
    print(f"v2 (wrong rule) rolled back after {summary['seconds_to_rollback']} s, having "
          f"answered {summary['rows_before_rollback']} rows: {summary['rollback_reason']}")
    print(f"v3 (better) promoted after {summary['seconds_to_promote']} s")
    for key, count in summary["predictions"].items():
        print(f"  {key:12s} {count:6d} predictions")
    for model, accuracy in summary["accuracy"].items():
        print(f"  {model:12s} accuracy {accuracy:.3f}")
    print(json.dumps(summary))
    ok = (summary["rows_in"] == summary["rows_out"] + summary["dead_letters"]
          and summary["rolled_back"] == ["v2.pkl"] and summary["promoted"] == ["v3.pkl"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
