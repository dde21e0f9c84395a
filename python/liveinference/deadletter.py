"""Dead letters: the record of a failed element, the DLQ tuple, and bad-row isolation."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple, Type, Union

import apache_beam as beam

__all__ = ["FailureRecord", "FailureThreshold", "RunInferenceDLQ", "isolate_failures"]

ExceptionTypes = Union[Type[BaseException], Tuple[Type[BaseException], ...]]


@dataclasses.dataclass(frozen=True)
class FailureRecord:
    """One element that did not make it through RunInference, and why.

    Attributes:
        element: The element as it entered the failing stage.
        stage: Where it failed: "preprocess[0]", "load_model", "inference", "postprocess[1]".
        exception_type: The qualified name of the exception's class.
        message: The exception's message.
        model_id: The model serving when it failed, if one was.
    """

    element: Any
    stage: str
    exception_type: str
    message: str
    model_id: Optional[str] = None

    @classmethod
    def of(
        cls, element: Any, stage: str, error: BaseException, model_id: Optional[str] = None
    ) -> "FailureRecord":
        """Builds the record of `element` failing at `stage` with `error`."""
        kind = type(error)
        return cls(element, stage, f"{kind.__module__}.{kind.__qualname__}", str(error), model_id)


class RunInferenceDLQ(NamedTuple):
    """The dead-letter outputs of `RunInference(...).with_exception_handling()`.

    Attributes:
        failed_inferences: FailureRecords of elements whose model load or inference failed.
        failed_preprocessing: One PCollection of FailureRecords per preprocessing function.
        failed_postprocessing: One PCollection of FailureRecords per postprocessing function.
        failed_model_loads: FailureRecords of model versions that failed to load or
            validate (element: the ModelMetadata; stage "load_model" or "validate").
            Beam's DLQ has no such field; it comes last so Beam's three keep their places.
    """

    failed_inferences: beam.PCollection
    failed_preprocessing: Sequence[beam.PCollection]
    failed_postprocessing: Sequence[beam.PCollection]
    failed_model_loads: Optional[beam.PCollection] = None


def isolate_failures(
    run: Callable[[Sequence[Any]], List[Any]],
    batch: Sequence[Any],
    error: BaseException,
    catch: ExceptionTypes,
) -> Tuple[List[Any], List[Tuple[Any, BaseException]]]:
    """Finds the elements of a failed batch that fail on their own, by splitting it in halves.

    Each half is run again; a half that fails is split further until the failing elements
    stand alone, so one bad row costs about 2*log2(len(batch)) extra calls, not the batch.

    Args:
        run: Runs a sub-batch and returns one result per element, in order.
        batch: The batch that failed.
        error: The error the whole batch raised.
        catch: The exception types that mark an element as bad; others propagate.

    Returns:
        The results of the good elements in input order, and (element, error) of the bad.
    """
    if len(batch) <= 1:
        return [], [(element, error) for element in batch]
    middle = len(batch) // 2
    results: List[Any] = []
    failures: List[Tuple[Any, BaseException]] = []
    for half in (batch[:middle], batch[middle:]):
        try:
            results.extend(run(half))
        except catch as half_error:
            good, bad = isolate_failures(run, half, half_error, catch)
            results.extend(good)
            failures.extend(bad)
    return results, failures


class FailureThreshold(beam.PTransform):
    """Fails the pipeline when dead letters exceed a share of the input, per window.

    Args:
        inputs: The PCollection that entered RunInference.
        threshold: The largest allowed share of dead letters, between 0 and 1.

    Raises:
        ValueError: at run time, naming the counts, when the share is exceeded.
    """

    def __init__(self, inputs: beam.PCollection, threshold: float) -> None:
        super().__init__()
        self._inputs = inputs
        self._threshold = threshold

    def expand(self, dead_letters: beam.PCollection) -> beam.PCollection:
        total = self._inputs | "CountInputs" >> (
            beam.Map(lambda _: 1) | beam.CombineGlobally(sum).as_singleton_view()
        )
        bad = dead_letters | "CountDeadLetters" >> (
            beam.Map(lambda _: 1) | beam.CombineGlobally(sum).without_defaults()
        )
        return bad | "CheckThreshold" >> beam.Map(_check_threshold, total, self._threshold)


def _check_threshold(bad: int, total: int, threshold: float) -> int:
    if bad > total * threshold:
        raise ValueError(
            f"{bad} of {total} elements went to the dead letters, over the threshold of "
            f"{threshold:.0%}; inspect the dead-letter output for the cause"
        )
    return bad
