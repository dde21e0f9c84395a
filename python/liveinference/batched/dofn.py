"""The DoFn that scores whole batch elements with the serving model.

It is `InferenceDoFn` (the same slot, refresher, metrics and model-load dead letters) with
another `process`: the model is read from the slot once per batch element, so a swap never
splits one and every output row's `model_id` names the model that made it. A batch that
fails is handled as the per-row path handles one (`InferenceDoFn._recover`): split in halves
until the failing rows stand alone, each dead-lettered as a `BatchRow` (its position and
values), while the good rows go on in the output batch, so input rows = output rows +
dead-lettered rows; a timeout fails the whole batch element.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy
from apache_beam.pvalue import TaggedOutput

from liveinference.batched.runners import TableRunner
from liveinference.batched.tables import Table
from liveinference.contract import ModelHandler
from liveinference.deadletter import ExceptionTypes, FailureRecord
from liveinference.dofn import FAILED, FAILED_MODEL_LOADS, InferenceDoFn
from liveinference.refresh.config import RefreshConfig
from liveinference.refresh.slot import ServingModel
from liveinference.sharing import ModelCopies
from liveinference.timeouts import call_with_timeout

__all__ = ["FAILED_POSTPROCESSING", "BatchedInferenceDoFn", "PostprocessFn"]

FAILED_POSTPROCESSING = "failed_postprocessing"

# postprocess_fn(rows, inferences, model_id): the kept rows (the input's kind), one
# inference per row, and the model that made them; returns the output batch.
PostprocessFn = Callable[[Any, Any, str], Any]
_Scored = List[Tuple[Sequence[int], Any]]


def _joined(scored: _Scored) -> Tuple[List[int], Any]:
    """The positions and inferences of scored parts, in order, as one of each."""
    if not scored:
        return [], []
    if len(scored) == 1:
        return list(scored[0][0]), scored[0][1]
    positions = [position for part, _ in scored for position in part]
    parts = [inferences for _, inferences in scored]
    if parts and all(isinstance(part, numpy.ndarray) for part in parts):
        return positions, numpy.concatenate(parts)
    return positions, [inference for part in parts for inference in part]


class BatchedInferenceDoFn(InferenceDoFn):
    """Runs the serving model on each batch element; one output batch per input batch.

    Args:
        handler: The handler of the first model.
        runner: How the handler scores a batch element.
        postprocess_fn: Makes the output batch; None adds `inference` and `model_id`
            columns to the kept rows.
        namespace, model_tag, catch, timeout, refresh: As `InferenceDoFn` takes them.
    """

    def __init__(
        self,
        handler: ModelHandler,
        runner: TableRunner,
        postprocess_fn: Optional[PostprocessFn],
        namespace: str,
        model_tag: str,
        catch: Optional[ExceptionTypes],
        timeout: Optional[float],
        refresh: RefreshConfig,
    ) -> None:
        super().__init__(handler, namespace, model_tag, catch, timeout, refresh)
        self._runner = runner
        self._postprocess_fn = postprocess_fn

    def _score(
        self, serving: ServingModel, table: Table, inference_args: Any
    ) -> Callable[[Sequence[int]], _Scored]:
        model = serving.model
        if isinstance(model, ModelCopies):
            model = model.pick()

        def score(positions: Sequence[int]) -> _Scored:
            def call() -> Any:
                return self._runner.run(serving.handler, model, table, positions, inference_args)

            return [(positions, call_with_timeout(
                call, self._timeout, f"inference on {len(positions)} rows"))]

        return score

    def process(  # type: ignore[override]
        self, element: Any, inference_args: Optional[Dict[str, Any]] = None
    ) -> Iterator[Any]:
        """Scores one batch element; yields its output batch, then its dead letters."""
        table = Table.of(element)
        if len(table) == 0:
            return
        slot = self._slot
        assert slot is not None, "setup() has not run"
        try:
            serving = slot.current() or slot.wait_for_model(self._timeout)
        except Exception as error:
            if not self._catches(error):
                raise
            base = self._metrics_for("")
            if base:
                base.failed_batches.inc()
            yield from self._dead_letters(table, range(len(table)), "load_model", error,
                                          slot.first_model_id)
            return
        for record in self._slot_events():
            yield TaggedOutput(FAILED_MODEL_LOADS, record)
        yield from self._scored(serving, table, inference_args)

    def _scored(self, serving: ServingModel, table: Table, inference_args: Any) -> Iterator[Any]:
        metrics = self._metrics_for(serving.model_name)
        score = self._score(serving, table, inference_args)
        everything = range(len(table))
        started = time.perf_counter_ns()
        failures: List[Tuple[Any, BaseException]] = []
        try:
            scored = score(everything)
        except Exception as error:
            scored, failures = self._recover(
                error, metrics, score, everything,
                f"a batch element of {len(table)} rows (model {serving.model_id})",
            )
        positions, inferences = _joined(scored)
        if metrics:
            metrics.record_batch(
                len(positions), table.nbytes, (time.perf_counter_ns() - started) // 1000
            )
        if positions:
            yield from self._output(table, positions, inferences, serving.model_id)
        for position, failure in failures:
            yield from self._dead_letters(table, [position], "inference", failure,
                                          serving.model_id)

    def _output(
        self, table: Table, positions: List[int], inferences: Any, model_id: str
    ) -> Iterator[Any]:
        if self._postprocess_fn is None:
            yield table.output(positions, inferences, model_id)
            return
        try:
            yield self._postprocess_fn(table.rows(positions), inferences, model_id)
        except Exception as error:
            if not self._catches(error):
                error.add_note(f"raised by on_batches' postprocess_fn {self._postprocess_fn!r}")
                raise
            for position in positions:
                record = FailureRecord.of(table.row(position), "postprocess[0]", error, model_id)
                yield TaggedOutput(FAILED_POSTPROCESSING, record)

    def _dead_letters(
        self, table: Table, positions: Sequence[int], stage: str, error: BaseException,
        model_id: str,
    ) -> Iterator[TaggedOutput]:
        for position in positions:
            record = FailureRecord.of(table.row(position), stage, error, model_id, batched=True)
            yield TaggedOutput(FAILED, record)
