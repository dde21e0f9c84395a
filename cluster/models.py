"""Model files for the cluster checks: constant scikit-learn classifiers, one slow to load.

A constant classifier predicts its version number for every row, so each prediction shows
which version served it. `SlowToLoad` takes seconds to unpickle and leaves marker files when a
worker starts and finishes loading it, so a check can act (kill a TaskManager) while a new
version is loading. The workers unpickle these classes, so they live in an importable module.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List

import numpy

from cluster.observe import where

__all__ = ["SlowToLoad", "constant_classifier", "load_markers"]


def constant_classifier(label: int) -> Any:
    """A fitted scikit-learn classifier that predicts `label` for every 4-feature row."""
    from sklearn.dummy import DummyClassifier

    return DummyClassifier(strategy="constant", constant=label).fit(
        numpy.zeros((2, 4)), [label, label]
    )


class SlowToLoad:
    """A constant classifier whose unpickling takes `seconds` and is recorded in `marker_dir`.

    Each worker that loads it writes `loading-<taskmanager>-<pid>` before waiting and
    `loaded-<taskmanager>-<pid>` after, in `marker_dir`.

    Args:
        label: what it predicts.
        seconds: how long each load takes.
        marker_dir: a directory every worker can write to.
    """

    def __init__(self, label: int, seconds: float, marker_dir: str) -> None:
        self.model = constant_classifier(label)
        self.seconds = seconds
        self.marker_dir = marker_dir

    def predict(self, rows: Any) -> Any:
        """The label, once per row."""
        return self.model.predict(rows)

    def __setstate__(self, state: Dict[str, Any]) -> None:
        here = where()
        name = f"{here['taskmanager']}-{here['pid']}"
        Path(state["marker_dir"], f"loading-{name}").touch()
        time.sleep(state["seconds"])
        self.__dict__.update(state)
        Path(state["marker_dir"], f"loaded-{name}").touch()


def load_markers(marker_dir: Path, stage: str) -> List[str]:
    """The "<taskmanager>-<pid>" of each worker that reached `stage` ("loading", "loaded")."""
    if not marker_dir.is_dir():
        return []
    return sorted(p.name[len(stage) + 1:] for p in marker_dir.glob(f"{stage}-*"))
