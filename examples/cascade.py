"""Cascade: a cheap model decides the easy rows; only the rows it is unsure of reach an
expensive model.

The cheap model is a scikit-learn logistic regression returning the probability of the
positive class; where that is at least CONFIDENCE for one class, its answer stands. The
other rows go to an XGBoost model of 300 trees. Both steps are RunInference with a
`KeyedModelHandler`, so each row keeps its id through the cascade.

    PYTHONPATH=python python examples/cascade.py
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy
import xgboost
from sklearn.linear_model import LogisticRegression

from liveinference import KeyedModelHandler, RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.frameworks.xgboost import XGBoostModelHandlerNumpy

FEATURES = 4
ROWS = 2000
CONFIDENCE = 0.9


def true_label(features: numpy.ndarray) -> int:
    """Mostly a straight line, bent by a wave in x2 that only the trees can follow."""
    x = numpy.asarray(features).reshape(-1)
    return int(x[0] + 0.5 * x[1] + 0.8 * numpy.sin(3 * x[2]) > 0)


def make_data(rows: int, seed: int) -> numpy.ndarray:
    return numpy.random.default_rng(seed).normal(size=(rows, FEATURES))


def train_models(directory: str) -> Dict[str, str]:
    """Trains the cheap and the expensive model on the same data; returns their paths."""
    x = make_data(3000, seed=3)
    y = numpy.array([true_label(row) for row in x])
    cheap = os.path.join(directory, "cheap-logistic.pkl")
    with open(cheap, "wb") as file:
        pickle.dump(LogisticRegression().fit(x, y), file)
    expensive = os.path.join(directory, "expensive-xgboost.ubj")
    trees = xgboost.XGBClassifier(n_estimators=300, max_depth=4, n_jobs=1).fit(x, y)
    trees.save_model(expensive)
    return {"cheap": cheap, "expensive": expensive}


def positive_probability(
    model: Any, batch: Sequence[numpy.ndarray], inference_args: Optional[Dict[str, Any]] = None
) -> numpy.ndarray:
    """The cheap model's inference function: P(positive) instead of the class."""
    return model.predict_proba(numpy.stack(batch))[:, 1]


def is_confident(keyed: Tuple[int, Any], _partitions: int) -> int:
    """Partition 0: the cheap model is sure either way; partition 1: it is not."""
    probability = float(keyed[1].inference)
    return 0 if max(probability, 1 - probability) >= CONFIDENCE else 1


def decision(stage: str, keyed: Tuple[int, Any]) -> Tuple[str, int, bool]:
    """Returns (which model decided, row id, whether it decided right)."""
    row_id, result = keyed
    probability = float(numpy.asarray(result.inference).reshape(-1)[0])
    return stage, row_id, int(probability >= 0.5) == true_label(result.example)


def print_summary(total: int, cheap_right: int, decisions: List[Tuple[str, int, bool]]) -> None:
    """Prints how many rows each model decided and the accuracy of the cascade."""
    by_stage = {
        stage: [right for decided_by, _, right in decisions if decided_by == stage]
        for stage in ("cheap", "expensive")
    }
    print(f"rows: {total}")
    for stage, rights in by_stage.items():
        accuracy = sum(rights) / len(rights) if rights else 0.0
        print(f"  decided by the {stage} model: {len(rights)} rows, accuracy {accuracy:.3f}")
    decided = sum(len(rights) for rights in by_stage.values())
    right = sum(sum(rights) for rights in by_stage.values())
    share = 100 * len(by_stage["expensive"]) / total
    print(f"decided {decided} of {total} rows; the expensive model ran on {share:.1f}% of them")
    print(f"cascade accuracy {right / total:.3f}, cheap model alone {cheap_right / total:.3f}")


def main() -> int:
    """Trains both models, runs the cascade on the local runner and prints its summary."""
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as directory:
        paths = train_models(directory)
        cheap = KeyedModelHandler(
            SklearnModelHandlerNumpy(paths["cheap"], inference_fn=positive_probability)
        )
        expensive = KeyedModelHandler(XGBoostModelHandlerNumpy(xgboost.Booster, paths["expensive"]))
        rows = list(enumerate(make_data(ROWS, seed=4)))
        with beam.Pipeline() as pipeline:
            first = pipeline | "Rows" >> beam.Create(rows) | "Cheap" >> RunInference(cheap)
            confident, unsure = first | "Confident" >> beam.Partition(is_confident, 2)
            second = (
                unsure
                | "AsTable" >> beam.MapTuple(lambda row_id, r: (row_id, r.example.reshape(1, -1)))
                | "Expensive" >> RunInference(expensive)
            )
            cheap_right = (
                first
                | "CheapAlone" >> beam.Map(lambda keyed: decision("cheap", keyed)[2])
                | "CountCheapRight" >> beam.CombineGlobally(sum)
            )
            _ = (
                (
                    confident | "ByCheap" >> beam.Map(lambda keyed: decision("cheap", keyed)),
                    second | "ByExpensive" >> beam.Map(lambda keyed: decision("expensive", keyed)),
                )
                | "Decisions" >> beam.Flatten()
                | "All" >> beam.combiners.ToList()
                | "Print" >> beam.Map(
                    lambda decisions, right: print_summary(len(rows), right, decisions),
                    right=beam.pvalue.AsSingleton(cheap_right),
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
