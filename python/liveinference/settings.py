"""The one check every numeric setting passes: intervals, timeouts and thresholds.

A setting that is not a finite number in its range would break refresh or inference
silently (a `nan` interval ends the refresh thread, a `nan` timeout dead-letters every
row), so every public entry point that takes seconds or a share calls `checked_number`
when it is built.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional

__all__ = ["checked_number"]


def checked_number(
    name: str,
    value: Any,
    *,
    unit: str = "seconds",
    at_most: Optional[float] = None,
    zero_allowed: bool = False,
) -> float:
    """Returns `value` as a float if it is a finite number in range; raises otherwise.

    Args:
        name: The argument's name, as the caller wrote it (e.g. "interval").
        value: The value given.
        unit: What the number counts, for the message ("" for a plain share).
        at_most: The largest value allowed, if any (1 for a threshold).
        zero_allowed: Whether 0 is allowed; otherwise the number must be positive.

    Returns:
        The value as a float.

    Raises:
        TypeError: if `value` is not a real number (booleans are refused too).
        ValueError: if it is nan or infinite, not positive (or negative, with
            `zero_allowed`), or above `at_most`.

    >>> checked_number("interval", 2)
    2.0
    >>> checked_number("interval", float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: interval must be a positive number of seconds, finite (not nan or inf), got inf
    """
    of_unit = f" of {unit}" if unit else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number{of_unit}, got {type(value).__name__} {value!r}")
    if at_most is not None:
        expected = f"a number between 0 and {at_most:g}{'' if zero_allowed else ' (not 0)'}"
    else:
        expected = f"a {'non-negative' if zero_allowed else 'positive'} number{of_unit}"
    number = float(value)
    too_low = number < 0 if zero_allowed else number <= 0
    too_high = at_most is not None and number > at_most
    if not math.isfinite(number) or too_low or too_high:
        raise ValueError(f"{name} must be {expected}, finite (not nan or inf), got {value!r}")
    return number
