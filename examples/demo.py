"""The batch demo: train a small model, then classify rows with RunInference on the local runner.

Some rows are malformed on purpose: they end in the dead-letter outputs, named by stage,
and the summary shows that every input was either predicted or dead-lettered.

    make demo        # or: PYTHONPATH=python python examples/demo.py
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import sys
import tempfile
from typing import List

import apache_beam as beam
import numpy
from sklearn.linear_model import LogisticRegression

from liveinference import RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy

FEATURES = 4
LABELS = {0: "negative", 1: "positive"}


def train_model(directory: str) -> str:
    """Trains a LogisticRegression on synthetic data and pickles it; returns its path."""
    rng = numpy.random.default_rng(7)
    x = rng.normal(size=(500, FEATURES))
    y = (x[:, 0] - x[:, 2] > 0).astype(int)
    path = os.path.join(directory, "classifier-v1.pkl")
    with open(path, "wb") as file:
        pickle.dump(LogisticRegression().fit(x, y), file)
    return path


def make_rows(count: int) -> List[str]:
    """Returns CSV rows of FEATURES numbers, with a few malformed ones mixed in."""
    rng = numpy.random.default_rng(11)
    rows = [",".join(f"{value:.3f}" for value in rng.normal(size=FEATURES)) for _ in range(count)]
    rows[10] = "1.0,two,3.0,4.0"      # not a number: fails preprocessing
    rows[20] = "1.0,2.0,3.0"          # too few features: fails inference
    rows[30] = "nan,0.1,0.2,0.3"      # NaN: the model refuses it
    return rows


def parse(line: str) -> numpy.ndarray:
    """Parses one CSV row into a feature vector."""
    return numpy.array([float(field) for field in line.split(",")])


def label(result) -> str:
    """Names the predicted class of one PredictionResult."""
    return f"{LABELS[int(result.inference)]} ({os.path.basename(result.model_id)})"


def main() -> int:
    """Runs the demo pipeline and prints its summary; returns the exit status."""
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as directory:
        model_path = train_model(directory)
        rows = make_rows(1000)
        handler = (
            SklearnModelHandlerNumpy(model_path, max_batch_size=64)
            .with_preprocess_fn(parse)
            .with_postprocess_fn(label)
        )
        with beam.Pipeline() as pipeline:
            predictions, dead = (
                pipeline
                | "Rows" >> beam.Create(rows)
                | "Classify" >> RunInference(handler).with_exception_handling()
            )
            counted = predictions | "CountLabels" >> beam.combiners.Count.PerElement()
            failures = (
                [dead.failed_preprocessing[0], dead.failed_inferences, dead.failed_postprocessing[0]]
                | "AllFailures" >> beam.Flatten()
            )
            summary = (
                (
                    counted | "AsLabel" >> beam.Map(lambda kv: ("predicted", kv)),
                    failures | "AsFailure" >> beam.Map(lambda r: ("dead", (r.stage, r.element, r.message))),
                )
                | "Both" >> beam.Flatten()
                | "All" >> beam.combiners.ToList()
            )
            _ = summary | "Print" >> beam.Map(lambda items: print_summary(len(rows), items))
    return 0


def print_summary(total: int, items: list) -> None:
    """Prints predictions per label and each dead letter, and checks nothing was lost."""
    predicted = collections.Counter()
    dead = []
    for kind, value in items:
        if kind == "predicted":
            predicted[value[0]] += value[1]
        else:
            dead.append(value)
    print(f"elements in: {total}")
    for name, count in sorted(predicted.items()):
        print(f"  predicted {name}: {count}")
    for stage, element, message in sorted(dead, key=lambda d: d[0]):
        print(f"  dead letter at {stage}: {element!r}: {message.splitlines()[0]}")
    accounted = sum(predicted.values()) + len(dead)
    print(f"predicted {sum(predicted.values())} + dead-lettered {len(dead)} = {accounted}")
    if accounted != total:
        raise SystemExit(f"lost {total - accounted} elements")


if __name__ == "__main__":
    sys.exit(main())
