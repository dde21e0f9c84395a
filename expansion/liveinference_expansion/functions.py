"""Ready-made preprocess and postprocess functions, allowed by every expansion service.

Name them from Java with `.withPreprocess("liveinference_expansion.functions.parse_csv_floats")`.
Each takes one element and returns one; a failure dead-letters that element.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy

from liveinference.contract import PredictionResult

__all__ = ["argmax_inference", "parse_csv_floats", "row_to_float_array", "to_float_array"]


def parse_csv_floats(line: str) -> numpy.ndarray:
    """Parses a line of comma-separated numbers into a float64 array.

    Raises:
        ValueError: naming the column that is not a number.
    """
    fields = line.split(",")
    values = numpy.empty(len(fields))
    for index, field in enumerate(fields):
        try:
            values[index] = float(field)
        except ValueError:
            raise ValueError(
                f"column {index} of {line!r} is {field.strip()!r}, not a number"
            ) from None
    return values


def to_float_array(values: Iterable[Any]) -> numpy.ndarray:
    """Turns a list of numbers (Java's Iterable<Double>) into a float64 array."""
    return numpy.asarray(list(values), dtype=numpy.float64)


def row_to_float_array(row: Any) -> numpy.ndarray:
    """Turns a Row of numeric fields (Java's Row) into a float64 array, in field order."""
    return numpy.asarray(tuple(row), dtype=numpy.float64)


def argmax_inference(result: PredictionResult) -> PredictionResult:
    """Replaces a vector of scores by the index of the highest (a class label)."""
    return result._replace(inference=int(numpy.argmax(numpy.asarray(result.inference))))
