"""Dead letters: the record of a failed element (read as Beam's pair too), the DLQ tuple,
and bad-row isolation."""

from __future__ import annotations

import sys
import traceback
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple, Type, Union

import apache_beam as beam

from liveinference.errors import is_whole_batch_failure

__all__ = ["ErrorInfo", "FailureRecord", "FailureThreshold", "RunInferenceDLQ", "isolate_failures"]

ExceptionTypes = Union[Type[BaseException], Tuple[Type[BaseException], ...]]


# What Beam puts at [1] of a dead letter: the exception's class, repr and traceback lines.
ErrorInfo = Tuple[Type[BaseException], str, List[str]]


def _importable(kind: type) -> bool:
    """True if `kind` can be found again by its module and qualified name."""
    found: Any = sys.modules.get(kind.__module__)
    for part in kind.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is kind


def _portable(kind: Type[BaseException]) -> Type[BaseException]:
    """The class itself if pickle can name it, else its nearest base that pickle can name."""
    return next(base for base in kind.__mro__ if _importable(base))


def _class_named(name: str) -> Type[BaseException]:
    """The exception class of a qualified name if its module is imported, else Exception."""
    module, _, qualname = name.rpartition(".")
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if isinstance(found, type) and issubclass(found, BaseException):
        return found
    return Exception


class FailureRecord(tuple):
    """One element that did not make it through RunInference, and why.

    It is also Beam's dead letter, a pair read as Beam code reads it: `record[1]` is
    `(exception class, repr(exception), traceback lines)`, what Beam's
    `with_exception_handling` puts there, so `x[1][0]` is the exception's class. Beam's
    `failed_inferences` hold `(batch, error)`; ours hold one record per failed element, so
    there `record[0]` is a one-element batch `[element]` and `x[0][0]` is the element. In
    every other dead-letter output `record[0]` is the element, as in Beam's.

    Args and attributes:
        element: The element as it entered the failing stage.
        stage: Where it failed: "preprocess[0]", "load_model", "inference", "postprocess[1]".
        exception_type: The qualified name of the exception's class.
        message: The exception's message, then its notes (one a line), if any.
        model_id: The model serving when it failed.
        error: Beam's `(class, repr, traceback lines)`; by default the class named by
            `exception_type` (Exception if its module is not imported), no traceback.
        batched: Whether `record[0]` is `[element]` (a failed_inferences record).
    """

    element: Any
    stage: str
    exception_type: str
    message: str
    model_id: Optional[str]
    batched: bool

    def __new__(
        cls,
        element: Any,
        stage: str,
        exception_type: str,
        message: str,
        model_id: Optional[str] = None,
        error: Optional[ErrorInfo] = None,
        batched: bool = False,
    ) -> "FailureRecord":
        if error is None:
            kind = _class_named(exception_type)
            error = (kind, f"{kind.__name__}({message!r})", [])
        record = super().__new__(cls, ([element] if batched else element, error))
        fields = zip(_FIELDS, (element, stage, exception_type, message, model_id, batched))
        record.__dict__.update(fields)
        return record

    @classmethod
    def of(
        cls,
        element: Any,
        stage: str,
        error: BaseException,
        model_id: Optional[str] = None,
        batched: bool = False,
    ) -> "FailureRecord":
        """Builds the record of `element` failing at `stage` with `error`.

        Args:
            element: The element as it entered the stage.
            stage: The stage's name.
            error: The exception it raised.
            model_id: The model serving when it failed.
            batched: Whether the record goes to failed_inferences (`record[0]` a batch).
        """
        kind = type(error)
        lines = traceback.format_exception(kind, error, error.__traceback__)
        return cls(
            element,
            stage,
            f"{kind.__module__}.{kind.__qualname__}",
            "\n".join([str(error), *getattr(error, "__notes__", ())]),
            model_id,
            (kind, repr(error), lines),
            batched,
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"FailureRecord is immutable; cannot set {name!r}")

    def _values(self) -> Tuple[Any, ...]:
        return tuple(self.__dict__[name] for name in _FIELDS[:5])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FailureRecord):
            return NotImplemented
        return self._values() == other._values()

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in zip(_FIELDS, self._values()))
        return f"FailureRecord({shown})"

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        # Beam pickles dead letters by the exception's class: a class pickle cannot name
        # (one defined in a function) travels as its nearest base that it can.
        kind, text, lines = self[1]
        return FailureRecord, (*self._values(), (_portable(kind), text, lines), self.batched)


_FIELDS = ("element", "stage", "exception_type", "message", "model_id", "batched")


class RunInferenceDLQ(NamedTuple):
    """The dead-letter outputs of `RunInference(...).with_exception_handling()`.

    Each holds `FailureRecord`s, which Beam code reads as Beam's pairs: `x[0][0]` is the
    element of a failed inference, `x[0]` the element of a failed pre/postprocessing
    step, `x[1]` the (exception class, repr, traceback lines) of the error.

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
    An error marked by `errors.mark_whole_batch_failure` (a model server that stays down)
    is about no element: every element of the batch, or half, that raised it fails with it,
    unsplit.

    Args:
        run: Runs a sub-batch and returns one result per element, in order.
        batch: The batch that failed.
        error: The error the whole batch raised.
        catch: The exception types that mark an element as bad; others propagate.

    Returns:
        The results of the good elements in input order, and (element, error) of the bad.
    """
    if len(batch) <= 1 or is_whole_batch_failure(error):
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
