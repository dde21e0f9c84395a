"""Pre- and post-processing steps: apply a handler's functions, dead-lettering failures.

A postprocessing dead letter names the model of the prediction that failed; a
preprocessing one names none, as no model has seen the element yet.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from liveinference.contract import model_id_of
from liveinference.deadletter import ExceptionTypes, FailureRecord

__all__ = ["ApplyFns"]


class _ApplyFnsDoFn(beam.DoFn):
    def __init__(self, fns: Sequence[Callable[[Any], Any]], stage: str, catch: Optional[ExceptionTypes]):
        self._fns = list(fns)
        self._stage = stage
        self._catch = catch

    def process(self, element: Any) -> Iterator[Any]:
        value = element
        for index, fn in enumerate(self._fns):
            try:
                value = fn(value)
            except Exception as error:
                if self._catch is None or not isinstance(error, self._catch):
                    error.add_note(f"raised by RunInference's {self._stage}[{index}] function {fn!r}")
                    raise
                record = FailureRecord.of(
                    value, f"{self._stage}[{index}]", error, model_id_of(element)
                )
                yield TaggedOutput(str(index), record)
                return
        yield value


class ApplyFns(beam.PTransform):
    """Applies functions to each element in order, in one step.

    Args:
        fns: The functions, applied first to last.
        stage: "preprocess" or "postprocess"; dead letters are staged "<stage>[i]".
        catch: The exception types that send an element to the dead letters; None lets
            every exception fail the pipeline.

    Returns (from expand):
        The transformed elements, and one PCollection of FailureRecords per function.
    """

    def __init__(
        self, fns: Sequence[Callable[[Any], Any]], stage: str, catch: Optional[ExceptionTypes]
    ) -> None:
        super().__init__()
        self._fns = list(fns)
        self._stage = stage
        self._catch = catch

    def expand(self, pcoll: beam.PCollection) -> Tuple[beam.PCollection, List[beam.PCollection]]:
        tags = [str(index) for index in range(len(self._fns))]
        outputs = pcoll | beam.ParDo(_ApplyFnsDoFn(self._fns, self._stage, self._catch)).with_outputs(
            *tags, main="main"
        )
        return outputs.main, [outputs[tag] for tag in tags]
