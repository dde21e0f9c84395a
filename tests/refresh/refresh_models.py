"""Constant classifiers for refresh tests, so a prediction names the model that made it."""

from __future__ import annotations

import os
import pickle

import numpy
from sklearn.dummy import DummyClassifier

FEATURES = 4


def constant_model(label: int) -> DummyClassifier:
    """A fitted classifier that predicts `label` for every example."""
    x = numpy.zeros((4, FEATURES))
    return DummyClassifier(strategy="constant", constant=label).fit(x, [label] * 4)


def write_model(path: str, label: int) -> str:
    """Writes a constant model to `path` atomically (temporary name, then rename)."""
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "wb") as file:
        pickle.dump(constant_model(label), file)
    os.replace(temporary, path)
    return path
