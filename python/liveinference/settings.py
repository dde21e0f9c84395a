"""Checks of RunInference's settings, run when it is built: the one check every numeric
setting passes (intervals, timeouts and thresholds), the handler and keywords, and Beam
2.77's ModelManager arguments.

A setting that is not a finite number in its range would break refresh or inference
silently (a `nan` interval ends the refresh thread, a `nan` timeout dead-letters every
row), so every public entry point that takes seconds or a share calls `checked_number`
when it is built.
"""

from __future__ import annotations

import math
import numbers
from typing import AbstractSet, Any, Mapping, Optional

__all__ = ["check_handler_and_keywords", "check_model_manager_arguments", "checked_number"]


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

def check_model_manager_arguments(use_model_manager: bool, model_manager_args: Any) -> None:
    """Refuses Beam 2.77's ModelManager arguments, saying what to use instead.

    Raises:
        ValueError: if `use_model_manager` is on or `model_manager_args` is given.
    """
    if not use_model_manager and model_manager_args is None:
        return
    raise ValueError(
        f"use_model_manager={use_model_manager!r}, model_manager_args={model_manager_args!r}: "
        "liveinference does not run Beam's ModelManager (many models' copies placed on a GPU "
        "by measured memory, evicted least recently used); each step serves one model per "
        "worker process and swaps versions in place. Leave both unset; to share one copy of "
        "a model among a machine's processes, build the handler with large_model=True "
        "(model_copies=N for N copies)"
    )


def check_handler_and_keywords(
    model_handler: Any, kwargs: Mapping[str, Any], accepted: AbstractSet[str]
) -> None:
    """Refuses a RunInference whose handler is not one, or that got unknown keywords.

    Raises:
        TypeError: naming what arrived and what is accepted.
    """
    if not all(hasattr(model_handler, name) for name in ("load_model", "run_inference")):
        raise TypeError(
            f"RunInference needs a ModelHandler, got {type(model_handler).__name__}; "
            "subclass liveinference.ModelHandler or use a framework handler"
        )
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"RunInference got unknown keyword arguments {unknown}; "
            f"it accepts {sorted(accepted)} besides its named parameters"
        )
