"""Pairs a batch of examples with the predictions a framework returned for it."""

from __future__ import annotations

from itertools import repeat
from typing import Any, Iterable, List, Optional, Sequence

from liveinference.contract import PredictionResult
from liveinference.errors import InvalidExampleError

__all__ = ["to_prediction_results"]


def to_prediction_results(
    batch: Sequence[Any], predictions: Any, model_id: Optional[str] = None
) -> List[PredictionResult]:
    """Returns one PredictionResult per example, in order.

    Args:
        batch: The examples.
        predictions: One prediction per example, or a dict of per-example sequences
            (multi-output models), which becomes one dict per example.
        model_id: The id of the model that made the predictions.

    Raises:
        InvalidExampleError: if the number of predictions differs from the number of
            examples, which would otherwise silently drop rows.
    """
    if isinstance(predictions, dict):
        names = list(predictions)
        rows: Iterable[Any] = [dict(zip(names, values)) for values in zip(*predictions.values())]
    else:
        rows = predictions
    rows = rows if isinstance(rows, list) else list(rows)
    if len(rows) != len(batch):
        raise InvalidExampleError(
            f"model {model_id!r} returned {len(rows)} predictions for {len(batch)} examples; "
            "its inference function must return one prediction per example"
        )
    # tuple.__new__ builds each result without a Python-level __new__ call per element.
    return list(map(tuple.__new__, repeat(PredictionResult), zip(batch, rows, repeat(model_id))))
