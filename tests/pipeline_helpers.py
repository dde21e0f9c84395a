"""Helpers the test suites import by name: the pipeline helpers of `liveinference.testing`
and the small data set the fixtures train on.

`Collect` writes what reaches a sink, `read_collected` reads it back, `query_metrics` reads
a run's metrics; they work on any runner whose workers share the file system. Import these
from here, never `from conftest import ...`: several folders have a conftest.py, and which one
that name reaches depends on the order pytest collects them.
"""

from __future__ import annotations

import numpy

from liveinference.testing import Collect, query_metrics, read_collected

__all__ = ["FEATURES", "Collect", "make_dataset", "query_metrics", "read_collected"]

FEATURES = 4


def make_dataset(rows: int = 200, seed: int = 0) -> tuple:
    """Returns (X, y): FEATURES float features and a class learnable from them."""
    rng = numpy.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    return x, y
