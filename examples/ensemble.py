"""Ensemble: two models score every row, and their probabilities are averaged.

A scikit-learn logistic regression and an XGBoost model each give the probability of the
positive class; the rows, keyed by id, go through two RunInference steps, are joined by id
with CoGroupByKey, and the mean probability decides. The summary compares the accuracy of
each model with the ensemble's.

    PYTHONPATH=python python examples/ensemble.py
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import tempfile
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy
import xgboost
from sklearn.linear_model import LogisticRegression

from liveinference import KeyedModelHandler, RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.frameworks.xgboost import XGBoostModelHandlerNumpy

FEATURES = 4
ROWS = 2000
MODELS = ("logistic", "xgboost")


def true_label(features: numpy.ndarray) -> int:
    """A straight line plus a bend: each model family gets part of it right."""
    x = numpy.asarray(features).reshape(-1)
    return int(x[0] + x[1] + 0.7 * numpy.sin(2 * x[2]) + 0.3 * x[3] ** 2 - 0.3 > 0)


def make_data(rows: int, seed: int) -> numpy.ndarray:
    return numpy.random.default_rng(seed).normal(size=(rows, FEATURES))


def train_models(directory: str) -> Dict[str, str]:
    """Trains both models on a small, noisy sample; returns their paths."""
    rng = numpy.random.default_rng(5)
    x = make_data(400, seed=5)
    y = numpy.array([true_label(row) for row in x])
    y = numpy.where(rng.random(len(y)) < 0.1, 1 - y, y)  # 10% label noise
    logistic = os.path.join(directory, "logistic.pkl")
    with open(logistic, "wb") as file:
        pickle.dump(LogisticRegression().fit(x, y), file)
    trees = os.path.join(directory, "xgboost.json")
    xgboost.XGBClassifier(n_estimators=40, max_depth=3, n_jobs=1).fit(x, y).save_model(trees)
    return {"logistic": logistic, "xgboost": trees}


def positive_probability(
    model: Any, batch: Sequence[numpy.ndarray], inference_args: Optional[Dict[str, Any]] = None
) -> numpy.ndarray:
    """The logistic regression's inference function: P(positive) instead of the class."""
    return model.predict_proba(numpy.stack(batch))[:, 1]


def probability(result: Any) -> float:
    return float(numpy.asarray(result.inference).reshape(-1)[0])


def combine(row_id: int, grouped: Dict[str, Iterable[Any]]) -> Tuple[int, Dict[str, float], int]:
    """Returns (row id, each model's and the mean probability, the true label)."""
    results = {name: next(iter(grouped[name])) for name in MODELS}
    scores = {name: probability(result) for name, result in results.items()}
    scores["ensemble"] = sum(scores.values()) / len(MODELS)
    return row_id, scores, true_label(results["logistic"].example)


def print_summary(total: int, rows: List[Tuple[int, Dict[str, float], int]]) -> None:
    """Prints the accuracy of each model and of their average."""
    print(f"rows: {total}, scored by both models: {len(rows)}")
    for name in (*MODELS, "ensemble"):
        right = sum(int(scores[name] >= 0.5) == label for _, scores, label in rows)
        print(f"  {name:<9} accuracy {right / len(rows):.3f}")


def main() -> int:
    """Trains both models, runs the ensemble on the local runner and prints its summary."""
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as directory:
        paths = train_models(directory)
        logistic = KeyedModelHandler(
            SklearnModelHandlerNumpy(paths["logistic"], inference_fn=positive_probability)
        )
        trees = KeyedModelHandler(XGBoostModelHandlerNumpy(xgboost.Booster, paths["xgboost"]))
        rows = list(enumerate(make_data(ROWS, seed=6)))
        with beam.Pipeline() as pipeline:
            source = pipeline | "Rows" >> beam.Create(rows)
            scored = {
                "logistic": source | "Logistic" >> RunInference(logistic),
                "xgboost": (
                    source
                    | "AsTable" >> beam.MapTuple(lambda row_id, x: (row_id, x.reshape(1, -1)))
                    | "XGBoost" >> RunInference(trees)
                ),
            }
            _ = (
                scored
                | "ById" >> beam.CoGroupByKey()
                | "Average" >> beam.MapTuple(combine)
                | "All" >> beam.combiners.ToList()
                | "Print" >> beam.Map(lambda combined: print_summary(len(rows), combined))
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
