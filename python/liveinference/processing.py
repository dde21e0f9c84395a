"""Pre- and post-processing steps: apply a handler's functions, dead-lettering failures.

A postprocessing dead letter names the model of the prediction that failed. A
preprocessing one (or a postprocessing one whose element names no model) names the model
serving in the step's worker process at the time, read from the slot the inference step
shares, without loading: the handler's own model until a version has been swapped in.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from liveinference.contract import model_id_of
from liveinference.deadletter import ExceptionTypes, FailureRecord
from liveinference.refresh.slot import ModelSlot
from liveinference.sharing import SlotAccess

__all__ = ["ApplyFns"]


class _ApplyFnsDoFn(beam.DoFn):
    def __init__(
        self,
        fns: Sequence[Callable[[Any], Any]],
        stage: str,
        catch: Optional[ExceptionTypes],
        slots: SlotAccess,
    ):
        self._fns = list(fns)
        self._stage = stage
        self._catch = catch
        self._slots = slots
        self._slot: Optional[ModelSlot] = None

    def setup(self) -> None:
        if self._catch is not None:
            self._slot = self._slots.acquire()

    def teardown(self) -> None:
        self._slot = None

    def _model_id(self, element: Any) -> Optional[str]:
        model_id = model_id_of(element)
        if model_id is None and self._slot is not None:
            model_id = self._slot.model_id_for(element)
        return model_id

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
                    value, f"{self._stage}[{index}]", error, self._model_id(element)
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
        slots: The inference step's slot, which names the model of a dead letter.

    Returns (from expand):
        The transformed elements, and one PCollection of FailureRecords per function.
    """

    def __init__(
        self,
        fns: Sequence[Callable[[Any], Any]],
        stage: str,
        catch: Optional[ExceptionTypes],
        slots: SlotAccess,
    ) -> None:
        super().__init__()
        self._tags = [str(index) for index in range(len(fns))]
        self._dofn = _ApplyFnsDoFn(fns, stage, catch, slots)

    def expand(self, pcoll: beam.PCollection) -> Tuple[beam.PCollection, List[beam.PCollection]]:
        outputs = pcoll | beam.ParDo(self._dofn).with_outputs(*self._tags, main="main")
        return outputs.main, [outputs[tag] for tag in self._tags]
