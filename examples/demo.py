"""The main demo: a streaming pipeline swaps models live while it classifies a steady stream.

It trains three small models, then streams 20 rows a second through RunInference on Beam's
embedded local runner, watching a folder for models. While it runs, the demo drops a second
model, then a corrupt file, then a third model into that folder. Each prediction is printed
with the model that made it; swaps and the rejected file are announced; a few malformed rows
go to the dead letters. It ends by itself with a summary that accounts for every row.

    make demo        # or: PYTHONPATH=python python examples/demo.py [--seconds 12]
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
import uuid
from typing import Any, Dict, Iterator, List

import apache_beam as beam
import numpy
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from liveinference import RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy

FEATURES = 4
ROWS_PER_SECOND = 20
LABELS = {0: "negative", 1: "positive"}


def train(kind: str, seed: int) -> Any:
    """Trains a small classifier of `kind` on synthetic data."""
    rng = numpy.random.default_rng(seed)
    x = rng.normal(size=(400, FEATURES))
    y = (x[:, 0] - x[:, 2] + 0.3 * seed > 0).astype(int)
    model = LogisticRegression() if kind == "linear" else DecisionTreeClassifier(max_depth=3)
    return model.fit(x, y)


def save(model: Any, path: str) -> str:
    """Pickles `model` to `path` the safe way: a temporary name, then a rename."""
    temporary = f"{path}.partial"
    with open(temporary, "wb") as file:
        pickle.dump(model, file)
    os.replace(temporary, path)
    return path


def row_for(tick: float) -> str:
    """Makes the CSV row of one stream tick; every 40th row is malformed on purpose."""
    index = int(round(tick * ROWS_PER_SECOND))
    values = numpy.random.default_rng(index).normal(size=FEATURES)
    if index % 40 == 39:
        return f"{index}:" + ",".join(f"{v:.3f}" for v in values[:3])
    return f"{index}:" + ",".join(f"{v:.3f}" for v in values)


def parse(row: str) -> numpy.ndarray:
    """Parses 'index:f1,f2,f3,f4' into [index, f1..f4]."""
    index, values = row.split(":")
    return numpy.array([float(index), *(float(v) for v in values.split(","))])


def features_only(model: Any, batch: List[numpy.ndarray], inference_args: Any = None) -> Any:
    """Predicts from the features, leaving out the row index carried in column 0."""
    return model.predict(numpy.stack(batch)[:, 1:])


class _Announce(beam.DoFn):
    """Prints each prediction, and a line whenever the serving model changes."""

    def __init__(self, started: float) -> None:
        self._started = started
        self._last_model = None

    def process(self, result: Any) -> Iterator[Dict[str, Any]]:
        model = os.path.basename(result.model_id)
        if model != self._last_model:
            print(f"== {time.time() - self._started:5.1f}s  now serving {model}", flush=True)
            self._last_model = model
        label = LABELS[int(result.inference)]
        print(f"   {time.time() - self._started:5.1f}s  row {int(result.example[0]):4d} -> {label:8s} by {model}", flush=True)
        yield {"kind": "predicted", "model": model}


def _announce_failure(record: Any, started: float) -> Dict[str, Any]:
    when = time.time() - started
    error = record.exception_type.rsplit(".", 1)[-1]
    if record.stage in ("load_model", "validate"):
        print(f"!! {when:5.1f}s  rejected model {os.path.basename(record.model_id)} at "
              f"{record.stage} ({error}); the last good model keeps serving", flush=True)
        return {"kind": "rejected_model", "model": os.path.basename(record.model_id)}
    where = f"row {int(record.element[0])}" if record.stage == "inference" else repr(record.element)
    print(f"!! {when:5.1f}s  dead letter at {record.stage}: {where}: "
          f"{record.message.splitlines()[0][:80]}", flush=True)
    return {"kind": "dead_letter", "stage": record.stage}


class _AppendJsonLines(beam.DoFn):
    """Appends each element as a JSON line to its own file under `directory`."""

    def __init__(self, directory: str) -> None:
        self._directory = directory

    def setup(self) -> None:
        self._file = open(os.path.join(self._directory, f"{uuid.uuid4().hex}.jsonl"), "a")

    def process(self, element: Dict[str, Any]) -> Iterator[None]:
        self._file.write(json.dumps(element) + "\n")
        self._file.flush()
        yield from ()

    def teardown(self) -> None:
        self._file.close()


def drop_models(folder: str, models: Dict[str, Any], seconds: float) -> threading.Thread:
    """Drops v2, a corrupt file and v3 into `folder` at a quarter, half and three quarters."""

    def run() -> None:
        step = seconds / 4
        time.sleep(step + 0.5)
        save(models["v2"], os.path.join(folder, "classifier-v2.pkl"))
        time.sleep(step)
        with open(os.path.join(folder, "classifier-corrupt.pkl"), "wb") as file:
            file.write(b"\x80\x04 this is not a model")
        time.sleep(step)
        save(models["v3"], os.path.join(folder, "classifier-v3.pkl"))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def summarize(directory: str, total: int) -> int:
    """Prints the summary from the collected outcome lines; returns the exit status."""
    outcomes: List[Dict[str, Any]] = []
    for name in os.listdir(directory):
        with open(os.path.join(directory, name)) as file:
            outcomes.extend(json.loads(line) for line in file)
    per_model = collections.Counter(o["model"] for o in outcomes if o["kind"] == "predicted")
    dead = [o for o in outcomes if o["kind"] == "dead_letter"]
    rejected = sorted({o["model"] for o in outcomes if o["kind"] == "rejected_model"})
    predicted = sum(per_model.values())
    print("\nsummary")
    print(f"  elements in:    {total}")
    print(f"  predicted:      {predicted}")
    for model, count in sorted(per_model.items()):
        print(f"    by {model}: {count}")
    print(f"  dead-lettered:  {len(dead)}")
    print(f"  models rejected: {', '.join(rejected) or 'none'}")
    print(f"  predicted + dead-lettered = {predicted + len(dead)} of {total} in")
    return 0 if predicted + len(dead) == total else 1


def main(argv: List[str]) -> int:
    """Runs the streaming demo; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as workdir:
        folder = os.path.join(workdir, "models")
        outcomes = os.path.join(workdir, "outcomes")
        os.makedirs(folder)
        os.makedirs(outcomes)
        models = {"v1": train("linear", 1), "v2": train("tree", 2), "v3": train("linear", 3)}
        first = save(models["v1"], os.path.join(folder, "classifier-v1.pkl"))
        handler = SklearnModelHandlerNumpy(
            first, inference_fn=features_only, max_batch_size=8
        ).with_preprocess_fn(parse)
        start = time.time() + 1.0
        ticks = numpy.arange(0, args.seconds, 1 / ROWS_PER_SECOND)
        print(f"streaming {len(ticks)} rows over {args.seconds:.0f}s; watching {folder}", flush=True)
        dropper = drop_models(folder, models, args.seconds + 1.0)
        options = PipelineOptions(streaming=True)
        with beam.Pipeline(options=options) as pipeline:
            rows = (
                pipeline
                | "Stream" >> PeriodicImpulse(
                    start_timestamp=start,
                    stop_timestamp=start + len(ticks) / ROWS_PER_SECOND,
                    fire_interval=1 / ROWS_PER_SECOND,
                )
                | "Row" >> beam.Map(lambda t: row_for(t - start))
            )
            predictions, dead = rows | "Classify" >> RunInference(
                handler, watch_model_pattern=os.path.join(folder, "*.pkl"), interval=0.5
            ).with_exception_handling()
            announced = predictions | "Announce" >> beam.ParDo(_Announce(start))
            failures = [
                failed | f"Announce{name}" >> beam.Map(_announce_failure, start)
                for name, failed in (
                    ("FailedInference", dead.failed_inferences),
                    ("RejectedModel", dead.failed_model_loads),
                    ("FailedParse", dead.failed_preprocessing[0]),
                )
            ]
            _ = (announced, *failures) | "Outcomes" >> beam.Flatten() | "Write" >> beam.ParDo(
                _AppendJsonLines(outcomes)
            )
        dropper.join(timeout=5)
        return summarize(outcomes, len(ticks))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
