"""The role a prediction was made in, carried by its type: stable, canary or shadow.

A prediction made during a rollout is a `StablePrediction`, `CanaryPrediction` or
`ShadowPrediction`: subclasses of PredictionResult with the same three fields, so code
written for Beam (unpacking `example, inference, model_id`, `isinstance(r,
PredictionResult)`) reads them unchanged, and Beam's coders keep the subclass. `role_of`
reads the role of any prediction; one made outside a rollout is "stable".
"""

from __future__ import annotations

from itertools import repeat
from typing import Any, ClassVar, List

from liveinference.contract import PredictionResult, is_prediction

__all__ = [
    "CANARY",
    "ROLES",
    "SHADOW",
    "STABLE",
    "CanaryPrediction",
    "ShadowPrediction",
    "StablePrediction",
    "role_of",
    "with_role",
]

STABLE = "stable"
CANARY = "canary"
SHADOW = "shadow"
ROLES = (STABLE, CANARY, SHADOW)


class StablePrediction(PredictionResult):
    """A prediction of the stable model during a rollout."""

    __slots__ = ()
    role: ClassVar[str] = STABLE


class CanaryPrediction(PredictionResult):
    """A prediction of the canary: the new version serving a share of the elements."""

    __slots__ = ()
    role: ClassVar[str] = CANARY


class ShadowPrediction(PredictionResult):
    """A prediction of the shadow: the new version predicting a copy of an element."""

    __slots__ = ()
    role: ClassVar[str] = SHADOW


_TYPES = {STABLE: StablePrediction, CANARY: CanaryPrediction, SHADOW: ShadowPrediction}
_new = tuple.__new__


def role_of(value: Any) -> str:
    """Returns the role of a prediction or a `(key, prediction)` pair.

    Args:
        value: A prediction RunInference emitted.

    Returns:
        "stable", "canary" or "shadow"; "stable" for a prediction made outside a rollout.
    """
    if isinstance(value, tuple) and len(value) == 2 and is_prediction(value[1]):
        value = value[1]
    return getattr(type(value), "role", STABLE)


def with_role(results: List[Any], role: str) -> List[Any]:
    """Returns `results` as predictions of `role`; results of other shapes pass unchanged.

    Args:
        results: Stamped predictions, or `(key, prediction)` pairs.
        role: One of ROLES.

    Raises:
        ValueError: for a role that is not one of ROLES.
    """
    if role not in _TYPES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    kind = _TYPES[role]
    return list(map(_converted, results, repeat(kind)))


def _converted(result: Any, kind: type) -> Any:
    if is_prediction(result):
        return _new(kind, tuple(result))
    if isinstance(result, tuple) and len(result) == 2 and is_prediction(result[1]):
        return (result[0], _new(kind, tuple(result[1])))
    return result
