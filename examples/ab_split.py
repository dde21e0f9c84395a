"""A/B split: a fixed share of traffic goes to a challenger model, and the two are compared.

The champion is a scikit-learn logistic regression, the challenger an XGBoost model. One
RunInference serves both, with a `KeyedModelHandler` that maps the key "champion" to one
model and "challenger" to the other. Each row is routed by a hash of its id, so a given
row always meets the same model and the challenger's share is fixed (20%). Every
prediction carries the model_id of the model that made it; the summary groups by it.

    PYTHONPATH=python python examples/ab_split.py
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import sys
import tempfile
import zlib
from typing import Any, Dict, List, Tuple

import apache_beam as beam
import numpy
import xgboost
from sklearn.linear_model import LogisticRegression

from liveinference import KeyedModelHandler, KeyModelMapping, RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.frameworks.xgboost import XGBoostModelHandlerNumpy

FEATURES = 4
ROWS = 2000
CHALLENGER_PERCENT = 20


def true_label(features: numpy.ndarray) -> int:
    """The rule the data follows: the sign of x0 * x1, which no straight line separates."""
    row = numpy.asarray(features).reshape(-1)
    return int(row[0] * row[1] > 0)


def make_data(rows: int, seed: int) -> numpy.ndarray:
    return numpy.random.default_rng(seed).normal(size=(rows, FEATURES))


def train_models(directory: str) -> Dict[str, str]:
    """Trains the champion and the challenger on the same data; returns their paths."""
    x = make_data(1000, seed=1)
    y = numpy.array([true_label(row) for row in x])
    champion = os.path.join(directory, "champion-logistic.pkl")
    with open(champion, "wb") as file:
        pickle.dump(LogisticRegression().fit(x, y), file)
    challenger = os.path.join(directory, "challenger-xgboost.json")
    xgboost.XGBClassifier(n_estimators=50, max_depth=3, n_jobs=1).fit(x, y).save_model(challenger)
    return {"champion": champion, "challenger": challenger}


def route(row_id: int, features: numpy.ndarray) -> Tuple[str, Any]:
    """Sends a fixed share of ids to the challenger; XGBoost takes a 2-D table per example."""
    if zlib.crc32(str(row_id).encode()) % 100 < CHALLENGER_PERCENT:
        return "challenger", features.reshape(1, -1)
    return "champion", features


def outcome(keyed_result: Tuple[str, Any]) -> Tuple[str, str, bool]:
    """Returns (arm, model file, whether the prediction was right) for one prediction."""
    arm, result = keyed_result
    predicted = int(numpy.asarray(result.inference).reshape(-1)[0])
    return arm, os.path.basename(result.model_id), predicted == true_label(result.example)


def print_summary(total: int, outcomes: List[Tuple[str, str, bool]]) -> None:
    """Prints the traffic share and the accuracy of each arm."""
    rows: Dict[Tuple[str, str], int] = collections.Counter()
    right: Dict[Tuple[str, str], int] = collections.Counter()
    for arm, model, correct in outcomes:
        rows[arm, model] += 1
        right[arm, model] += correct
    accuracy = {arm: right[arm, model] / rows[arm, model] for arm, model in rows}
    challenger = sum(count for (arm, _), count in rows.items() if arm == "challenger")
    print(f"rows: {total}")
    print(
        f"traffic to challenger: {challenger} of {len(outcomes)} "
        f"({100 * challenger / len(outcomes):.1f}%, target {CHALLENGER_PERCENT}%)"
    )
    for arm, model in sorted(rows):
        print(f"  {arm:<10} {model}: {rows[arm, model]} rows, accuracy {accuracy[arm]:.3f}")
    gain = accuracy["challenger"] - accuracy["champion"]
    verdict = "beats" if gain > 0 else "does not beat"
    print(f"challenger {verdict} champion by {gain:+.3f} accuracy")


def main() -> int:
    """Trains both models, runs the split on the local runner and prints the comparison."""
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as directory:
        paths = train_models(directory)
        handler = KeyedModelHandler([
            KeyModelMapping(["champion"], SklearnModelHandlerNumpy(paths["champion"])),
            KeyModelMapping(
                ["challenger"], XGBoostModelHandlerNumpy(xgboost.XGBClassifier, paths["challenger"])
            ),
        ])
        rows = list(enumerate(make_data(ROWS, seed=2)))
        with beam.Pipeline() as pipeline:
            _ = (
                pipeline
                | "Rows" >> beam.Create(rows)
                | "Route" >> beam.MapTuple(route)
                | "Predict" >> RunInference(handler)
                | "Outcome" >> beam.Map(outcome)
                | "All" >> beam.combiners.ToList()
                | "Print" >> beam.Map(lambda outcomes: print_summary(len(rows), outcomes))
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
