"""The inference step of RunInference: the ParDo over batches and the outputs it ends in.

Main output, dead letters (failed inferences, with the records of a crashed subprocess when
`use_subprocess` is on), rejected model versions, and the rollout's extra outputs.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Optional, Tuple

import apache_beam as beam

from liveinference.contract import ModelHandler
from liveinference.deadletter import ExceptionTypes, FailureRecord
from liveinference.dofn import FAILED, FAILED_MODEL_LOADS, InferenceDoFn, crash_model_id
from liveinference.event_time import crashed_elements
from liveinference.refresh.config import RefreshConfig
from liveinference.rollout.consensus import rollout_outputs, rollout_tags

__all__ = ["infer_step"]

_CRASHED = "crashed"


def _crash_records(
    crash: Tuple[Any, Tuple[Any, str, Any]], model_id: str
) -> Iterator[FailureRecord]:
    """Turns a batch whose worker subprocess died into one record per element."""
    batch, (error_type, error_repr, lines) = crash
    elements = crashed_elements(batch, model_id)
    message = (
        f"the inference subprocess died on this element's batch ({error_repr}); its "
        f"{len(elements)} elements are dead-lettered together"
    )
    for element, model_id in elements:
        yield FailureRecord(
            element,
            "inference",
            f"{error_type.__module__}.{error_type.__qualname__}",
            message,
            model_id,
            (error_type, error_repr, lines),
            batched=True,
        )


def infer_step(
    batches: beam.PCollection,
    dofn: InferenceDoFn,
    handler: ModelHandler,
    refresh: RefreshConfig,
    inference_args: Optional[Dict[str, Any]],
    catch: Optional[ExceptionTypes],
    use_subprocess: bool,
    labels: Optional[beam.PTransform] = None,
) -> Tuple[beam.PCollection, Any, Any, Any]:
    """Applies `dofn` to `batches`.

    Args:
        batches: The batches of examples.
        dofn: The DoFn that serves the step's model (per batch, or by event time).
        handler: The step's handler (for resource hints and crash records' model id).
        refresh: How the step refreshes (its rollout, if any).
        inference_args: Extra arguments for the framework's predict call.
        catch: The exception types that dead-letter; None fails the bundle instead.
        use_subprocess: Run the DoFn in a subprocess, so that a crash dead-letters its batch.
        labels: The rollout's JoinLabels, whose statistics join the shared decision.

    Returns:
        (predictions, failed inferences, failed model loads, shadow pairs); the last three
        are None when they do not apply.
    """
    pardo = beam.ParDo(dofn, inference_args)
    pardo.with_resource_hints(**handler.get_resource_hints())
    rollout = refresh.rollout
    extra = rollout_tags(rollout)
    if catch is None:
        if not extra:
            return batches | "RunInference" >> pardo, None, None, None
        outputs = batches | "RunInference" >> pardo.with_outputs(*extra, main="main")
        _, shadows = rollout_outputs(outputs, rollout, None, labels)
        return outputs.main, None, None, shadows
    tags = (FAILED, FAILED_MODEL_LOADS, *extra)
    if not use_subprocess:
        outputs = batches | "RunInference" >> pardo.with_outputs(*tags, main="main")
        loads, shadows = rollout_outputs(outputs, rollout, outputs[FAILED_MODEL_LOADS], labels)
        return outputs.main, outputs[FAILED], loads, shadows
    outputs = batches | "RunInference" >> pardo.with_exception_handling(
        main_tag="main", dead_letter_tag=_CRASHED, exc_class=catch, use_subprocess=True
    )
    crashed = outputs[_CRASHED] | "CrashRecords" >> beam.FlatMap(
        _crash_records, crash_model_id(handler, refresh)
    )
    failed = (outputs[FAILED], crashed) | "FailedInferences" >> beam.Flatten()
    loads, shadows = rollout_outputs(outputs, rollout, outputs[FAILED_MODEL_LOADS], labels)
    return outputs.main, failed, loads, shadows
