"""Crossing in batches: one cross-language element carries many rows each way.

Every element that crosses between Java and Python costs a trip through the Fn API's data
channel and a DoFn call on each side. With `ConfiguredRunInference(crossing_batch=True)` the
Java side groups the rows of a bundle into one element (an iterable of examples), and Python:

1. runs the preprocess functions on each row of it (a row that fails is dead-lettered at
   `preprocess[i]`, as in the per-row path) and stacks the rows into NumPy 2-D arrays, one per
   row shape, so a row of the wrong length meets the model's own error, row by row;
2. scores each array with `RunInference(...).on_batches()` (one framework call per array;
   failing rows isolated and dead-lettered with the model that refused them);
3. returns the batch as one element, an iterable of prediction Rows `(example, inference,
   model_id)`, which Java flattens.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy
from apache_beam.pvalue import TaggedOutput

from liveinference.deadletter import FailureRecord
from liveinference_expansion.rows import ToPredictionRow

__all__ = ["CrossingBatches"]

_FAILED = "failed_preprocessing"


class _PrepareBatches(beam.DoFn):
    """Preprocesses each row of a crossing batch and stacks the rows into 2-D arrays."""

    def __init__(self, fns: Sequence[Callable[[Any], Any]], catch: bool,
                 model_id: Optional[str]) -> None:
        self._fns = list(fns)
        self._catch = catch
        self._model_id = model_id

    def process(self, batch: Any) -> Iterator[Any]:  # type: ignore[override]
        """Yields one 2-D array per row shape, then a dead letter per failed row."""
        by_shape: Dict[Tuple[int, ...], List[Any]] = {}
        failed: List[FailureRecord] = []
        for element in batch:
            value, index = element, 0
            try:
                for index, fn in enumerate(self._fns):
                    value = fn(value)
                row = numpy.asarray(value)
            except Exception as error:
                if not self._catch:
                    error.add_note(f"raised by preprocess[{index}] on {element!r}")
                    raise
                failed.append(FailureRecord.of(element, f"preprocess[{index}]", error,
                                               self._model_id))
                continue
            by_shape.setdefault(row.shape, []).append(row)
        for rows in by_shape.values():
            yield numpy.stack(rows) if rows[0].ndim else numpy.asarray(rows).reshape(-1, 1)
        for record in failed:
            yield TaggedOutput(_FAILED, record)


class _ToRows:
    """on_batches' postprocess_fn: the kept rows and their inferences as prediction Rows."""

    def __init__(self, to_row: ToPredictionRow) -> None:
        self._to_row = to_row

    def __call__(self, rows: Any, inferences: Any, model_id: str) -> List[Any]:
        return self._to_row.many(rows, inferences, model_id)


class CrossingBatches:
    """The steps around `on_batches()` when rows cross the language boundary in batches.

    Args:
        preprocess: The preprocess functions, in the order they run, applied to each row.
        to_row: Turns a PredictionResult into a prediction Row.
        exception_handling: Dead-letter rows that fail preprocessing instead of failing.
        model_id: The configured model, named by preprocessing dead letters.
    """

    def __init__(self, preprocess: Sequence[Callable[[Any], Any]], to_row: ToPredictionRow,
                 exception_handling: bool, model_id: Optional[str]) -> None:
        self._prepare = _PrepareBatches(preprocess, exception_handling, model_id)
        self._exception_handling = exception_handling
        self.postprocess_fn = _ToRows(to_row)

    @staticmethod
    def check(keyed: bool, postprocess: Sequence[Any]) -> None:
        """Refuses what a crossing batch cannot carry.

        Raises:
            ValueError: for keyed input or postprocess functions, saying what to do instead.
        """
        if keyed:
            raise ValueError(
                "crossing_batch=True takes unkeyed examples (RunInference.of); for keyed "
                "examples (ofKVs) drop withCrossingBatch"
            )
        if postprocess:
            raise ValueError(
                f"crossing_batch=True runs no postprocess functions (got {list(postprocess)}): "
                "predictions leave Python as Rows (example, inference, model_id); transform "
                "them on the Java side, or drop withCrossingBatch"
            )

    def prepare(self, batches: beam.PCollection) -> Tuple[beam.PCollection,
                                                           Optional[beam.PCollection]]:
        """Applies the preprocessing step to the crossing batches.

        Returns:
            The 2-D arrays to score, and with exception handling the preprocessing dead
            letters (else None).
        """
        if not self._exception_handling:
            return batches | "PrepareBatches" >> beam.ParDo(self._prepare), None
        outputs = batches | "PrepareBatches" >> beam.ParDo(self._prepare).with_outputs(
            _FAILED, main="main"
        )
        return outputs.main, outputs[_FAILED]
