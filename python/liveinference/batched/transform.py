"""`RunInference(...).on_batches()`: the settings it records, and the step it expands to.

Beam's Batched DoFns (`process_batch`) batch a PCollection of rows; here each element is
already a batch (`ReadFromParquetBatched` yields a pyarrow Table per element), so the step
is a plain DoFn over batch elements, and Beam's batch converters (chosen by a row type's
typehints) have nothing to convert.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Sequence

import apache_beam as beam

from liveinference.batched.dofn import FAILED_POSTPROCESSING, BatchedInferenceDoFn, PostprocessFn
from liveinference.batched.runners import TableRunner
from liveinference.contract import ModelHandler
from liveinference.deadletter import ExceptionTypes, RunInferenceDLQ
from liveinference.dofn import FAILED, FAILED_MODEL_LOADS
from liveinference.refresh.config import RefreshConfig

__all__ = ["OnBatches"]


@dataclasses.dataclass(frozen=True)
class OnBatches:
    """How RunInference scores batch elements (from `RunInference.on_batches`).

    Attributes:
        handler: The handler of the first model.
        runner: How the handler scores a batch element.
        postprocess_fn: Makes each output batch, or None for the default columns.
    """

    handler: ModelHandler
    runner: TableRunner
    postprocess_fn: Optional[PostprocessFn] = None

    @classmethod
    def check(
        cls,
        handler: ModelHandler,
        feature_columns: Optional[Sequence[str]],
        postprocess_fn: Optional[PostprocessFn],
    ) -> "OnBatches":
        """Checks that the handler can score batch elements.

        Raises:
            TypeError: if it cannot (saying why), if it has per-example pre- or
                postprocessing functions, or if `postprocess_fn` is not callable.
        """
        for stage in ("preprocess", "postprocess"):
            if list(getattr(handler, f"get_{stage}_fns")()):
                raise TypeError(
                    f"on_batches() scores whole batches, so the handler's per-example {stage} "
                    f"functions cannot run; transform the batches with a beam.Map "
                    f"{'before' if stage == 'preprocess' else 'after'} RunInference, or give "
                    "on_batches(postprocess_fn=...)"
                )
        if postprocess_fn is not None and not callable(postprocess_fn):
            raise TypeError(f"postprocess_fn must be callable, got {postprocess_fn!r}")
        return cls(handler, TableRunner.for_handler(handler, feature_columns), postprocess_fn)

    def transform(
        self,
        namespace: str,
        slot_tag: str,
        refresh: RefreshConfig,
        inference_args: Optional[Dict[str, Any]],
        catch: Optional[ExceptionTypes],
        timeout: Optional[float],
    ) -> beam.PTransform:
        """The step that scores the batches, sharing the per-row step's model slot.

        Returns:
            A PTransform returning the output batches, or with `catch` the output batches
            and a `RunInferenceDLQ` whose dead letters are rows (`BatchRow`s).
        """
        return _ScoreBatches(self, namespace, slot_tag, refresh, inference_args, catch, timeout)


class _ScoreBatches(beam.PTransform):
    def __init__(
        self,
        settings: OnBatches,
        namespace: str,
        slot_tag: str,
        refresh: RefreshConfig,
        inference_args: Optional[Dict[str, Any]],
        catch: Optional[ExceptionTypes],
        timeout: Optional[float],
    ) -> None:
        super().__init__()
        self._dofn = BatchedInferenceDoFn(
            settings.handler, settings.runner, settings.postprocess_fn, namespace, slot_tag,
            catch, timeout, refresh,
        )
        self._pardo = beam.ParDo(self._dofn, inference_args)
        self._pardo.with_resource_hints(**settings.handler.get_resource_hints())
        self._catch = catch
        self._postprocess = settings.postprocess_fn is not None

    def expand(self, batches: beam.PCollection) -> Any:
        if self._catch is None:
            return batches | "ScoreBatches" >> self._pardo
        outputs = batches | "ScoreBatches" >> self._pardo.with_outputs(
            FAILED, FAILED_MODEL_LOADS, FAILED_POSTPROCESSING, main="main"
        )
        postprocessing = [outputs[FAILED_POSTPROCESSING]] if self._postprocess else []
        return outputs.main, RunInferenceDLQ(
            outputs[FAILED], [], postprocessing, outputs[FAILED_MODEL_LOADS]
        )
