"""Typed rows across the language boundary: the schema of predictions and dead letters.

Java (or any SDK) names the example and inference types as plain strings ("int64",
"double", "string", "array<double>", ...); the predictions become Rows
(example, inference, model_id) of those types, encoded with Beam's portable RowCoder, and
dead letters become Rows (element, stage, error) of strings. A dict, list, array or tensor
declared as a string (a Hugging Face pipeline's `{"label": ..., "score": ...}`, a tokenizer's
output) crosses as JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, List, Optional, Tuple

import apache_beam as beam
import numpy
from apache_beam.typehints.row_type import RowTypeConstraint

from liveinference.batched import BatchRow
from liveinference.contract import PredictionResult

__all__ = [
    "DEAD_LETTER_TYPE",
    "TYPE_NAMES",
    "dead_letter_row",
    "parse_type",
    "prediction_row_type",
    "to_prediction_row",
]

TYPE_NAMES = {
    "int64": int,
    "int32": numpy.int32,
    "int16": numpy.int16,
    "double": float,
    "float": numpy.float32,
    "string": str,
    "boolean": bool,
    "bytes": bytes,
}
_ARRAY = re.compile(r"(array|iterable)<(.+)>")

DEAD_LETTER_TYPE = RowTypeConstraint.from_fields(
    [("element", str), ("stage", str), ("error", str)]
)


def _lookup(text: str) -> Any:
    if text in TYPE_NAMES:
        return TYPE_NAMES[text]
    match = _ARRAY.fullmatch(text)
    if match:
        item = _lookup(match.group(2).strip())
        return None if item is None else List[item]  # type: ignore[valid-type]
    return None


def parse_type(name: Any, what: str) -> Any:
    """Turns a type name such as "array<double>" into the Python type of a schema field.

    Raises:
        TypeError: if `name` is not a string.
        ValueError: if it names no known type.
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a type name (a string), got {type(name).__name__}")
    found = _lookup(name.strip().lower())
    if found is None:
        raise ValueError(
            f"{what} {name!r} is not a type this service knows; use one of "
            f"{sorted(TYPE_NAMES)} or array<...> of them"
        )
    return found


def prediction_row_type(example_type: Any, inference_type: Any) -> RowTypeConstraint:
    """Returns the schema of a prediction: example, inference, model_id (nullable)."""
    fields: List[Tuple[str, Any]] = [
        ("example", example_type), ("inference", inference_type), ("model_id", Optional[str])
    ]
    return RowTypeConstraint.from_fields(fields)


def _json_value(value: Any) -> Any:
    """Makes numpy and tensor values inside a dict or list JSON-serializable."""
    if hasattr(value, "numpy") and not isinstance(value, numpy.ndarray):
        value = value.numpy()
    if isinstance(value, (numpy.ndarray, numpy.generic)):
        return value.tolist()
    raise TypeError(f"a {type(value).__name__} cannot be written as JSON")


def _as_text(value: Any) -> str:
    if isinstance(value, numpy.ndarray):
        return json.dumps(value.tolist())
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=_json_value)
    return str(value)


def _converter(field_type: Any, what: str) -> Callable[[Any], Any]:
    """Returns a function converting a framework value (numpy, tensor, ...) to `field_type`."""
    if getattr(field_type, "__origin__", None) is list:
        (item_type,) = field_type.__args__
        item = _converter(item_type, what)

        def to_list(value: Any) -> List[Any]:
            if hasattr(value, "numpy") and not isinstance(value, numpy.ndarray):
                value = value.numpy()  # TensorFlow and PyTorch tensors
            if hasattr(value, "tolist"):
                value = value.tolist()
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise TypeError(f"{what} must be a sequence, got {type(value).__name__}")
            return [item(element) for element in value]

        return to_list
    python_type = {numpy.int32: int, numpy.int16: int, numpy.float32: float}.get(
        field_type, field_type
    )

    def to_scalar(value: Any) -> Any:
        if hasattr(value, "numpy") and not isinstance(value, numpy.ndarray):
            value = value.numpy()
        if isinstance(value, numpy.ndarray) and value.size == 1:
            value = value.reshape(()).item()
        if isinstance(value, numpy.generic):
            value = value.item()
        if python_type is str and not isinstance(value, str):
            return _as_text(value)
        if python_type in (int, float, bool) and isinstance(value, (int, float, bool)):
            return python_type(value)
        if not isinstance(value, python_type):
            raise TypeError(
                f"{what} must be {python_type.__name__}, got {type(value).__name__} {value!r}"
            )
        return value

    return to_scalar


# NumPy dtype kinds whose `tolist()` gives exactly what `_converter` makes of each value.
_KINDS = {float: "f", numpy.float32: "f", int: "iu", numpy.int32: "iu", numpy.int16: "iu",
          bool: "b"}


def _converts_whole(field_type: Any, values: Any) -> bool:
    """Whether a batch of `values` (one per row) converts to `field_type` with one tolist()."""
    if not isinstance(values, numpy.ndarray):
        return False
    if getattr(field_type, "__origin__", None) is list:
        (item_type,) = field_type.__args__
        return values.ndim == 2 and values.dtype.kind in _KINDS.get(item_type, "")
    return values.ndim == 1 and values.dtype.kind in _KINDS.get(field_type, "")


class ToPredictionRow:
    """Turns a PredictionResult (or a `(key, PredictionResult)` pair) into a typed Row.

    Used as the last postprocess function, so a value that does not fit the declared types
    is dead-lettered like any other postprocessing failure.
    """

    def __init__(self, example_type: Any, inference_type: Any, keyed: bool) -> None:
        self._types = (example_type, inference_type)
        self._example = _converter(example_type, "the example")
        self._inference = _converter(inference_type, "the inference")
        self._keyed = keyed

    def many(self, examples: Any, inferences: Any, model_id: Any) -> List[Any]:
        """Unkeyed prediction Rows for a batch scored whole, one per (example, inference).

        A NumPy batch whose dtype fits its declared type converts in one `tolist()` (the
        same values as row by row, without a Python call per value); anything else converts
        row by row, as `__call__` does.

        Raises:
            TypeError: a value does not fit its declared type.
        """
        example_type, inference_type = self._types
        rows = (examples.tolist() if _converts_whole(example_type, examples)
                else [self._example(example) for example in examples])
        labels = (inferences.tolist() if _converts_whole(inference_type, inferences)
                  else [self._inference(inference) for inference in inferences])
        name = None if model_id is None else str(model_id)
        return [beam.Row(example=row, inference=label, model_id=name)
                for row, label in zip(rows, labels)]

    def _row(self, result: Any) -> Any:
        if not isinstance(result, PredictionResult):
            raise TypeError(
                "a prediction must reach the output as a PredictionResult(example, inference, "
                f"model_id), got {type(result).__name__}; postprocess functions given to the "
                "expansion service must return PredictionResults"
            )
        model_id = None if result.model_id is None else str(result.model_id)
        return beam.Row(
            example=self._example(result.example),
            inference=self._inference(result.inference),
            model_id=model_id,
        )

    def __call__(self, result: Any) -> Any:
        if self._keyed:
            key, value = result
            return key, self._row(value)
        return self._row(result)


def to_prediction_row(result: Any, example_type: Any, inference_type: Any) -> Any:
    """Converts one unkeyed PredictionResult to a prediction Row (a convenience for tests)."""
    return ToPredictionRow(example_type, inference_type, keyed=False)(result)


def _render(element: Any) -> str:
    if isinstance(element, BatchRow):  # a row of a batch scored whole: its values
        return _render(element.values)
    if isinstance(element, str):
        return element
    if isinstance(element, numpy.ndarray):
        return repr(element.tolist())
    if isinstance(element, tuple) and len(element) == 2:
        return f"({_render(element[0])}, {_render(element[1])})"
    return repr(element)


def dead_letter_row(record: Any) -> Any:
    """Turns a liveinference FailureRecord into a Row(element, stage, error) of strings."""
    model = f" (model {record.model_id})" if record.model_id else ""
    return beam.Row(
        element=_render(record.element),
        stage=record.stage,
        error=f"{record.exception_type}: {record.message}{model}",
    )

