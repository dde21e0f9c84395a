"""When a canary is promoted or rolled back: a pure function of its statistics and the gates.

`decide` reads snapshots only (no clock, no threads), as the refresh policy does, so every
worker given the same combined statistics reaches the same decision.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Dict, Optional, Tuple

from liveinference.rollout.stats import RoleStats
from liveinference.settings import checked_number

__all__ = ["Action", "Decision", "RolloutGates", "decide"]


class Action(str, enum.Enum):
    """What to do with the canary."""

    WAIT = "wait"
    PROMOTE = "promote"
    ROLLBACK = "rollback"


@dataclasses.dataclass(frozen=True)
class RolloutGates:
    """The bounds a canary must stay within to be promoted.

    The canary is judged once it has answered `min_predictions` elements, or once
    `max_seconds` have passed with at least one answered. It is rolled back earlier when
    its errors alone already exceed `max_error_rate` of `min_predictions`, whatever the
    rest would do. With `max_accuracy_drop`, a canary that passes every other gate also
    waits for `min_labelled` labelled predictions before it may be promoted.

    Attributes:
        min_predictions: Elements the canary answers before it is judged.
        max_seconds: Seconds after which it is judged on what it answered, if set.
        max_error_rate: The largest share of its elements that may be dead-lettered.
        latency_quantile: The latency quantile checked, e.g. 0.99.
        max_latency_ms: The most that quantile may take, if checked.
        max_latency_ratio: The most that quantile may be, as a multiple of the stable
            model's, if checked (and the stable model has answered).
        min_agreement: The least share of predictions equal to the stable model's, if
            checked (shadow mode compares every element).
        max_accuracy_drop: How much lower than the stable model's the canary's label
            accuracy may be, if checked (needs labels: `with_rollout(labels=JoinLabels(...))`).
            The canary then waits for labels: it is not promoted before `min_labelled` of
            its predictions and of the stable model's met their labels, and is rolled back
            if they have not after `max_seconds`.
        min_labelled: Labelled predictions each model needs before the accuracy gate may
            pass (only read with `max_accuracy_drop`).

    Raises:
        TypeError, ValueError: naming the gate, for a bound out of range.
    """

    min_predictions: int = 1000
    max_seconds: Optional[float] = None
    max_error_rate: float = 0.01
    latency_quantile: float = 0.99
    max_latency_ms: Optional[float] = None
    max_latency_ratio: Optional[float] = None
    min_agreement: Optional[float] = None
    max_accuracy_drop: Optional[float] = None
    min_labelled: int = 100

    def __post_init__(self) -> None:
        for name in ("min_predictions", "min_labelled"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        checked_number(
            "max_error_rate", self.max_error_rate, unit="", at_most=1, zero_allowed=True
        )
        checked_number("latency_quantile", self.latency_quantile, unit="", at_most=1)
        units = {
            "max_seconds": "seconds",
            "max_latency_ms": "milliseconds",
            "max_latency_ratio": "",
        }
        for name, unit in units.items():
            value = getattr(self, name)
            if value is not None:
                checked_number(name, value, unit=unit)
        for name in ("min_agreement", "max_accuracy_drop"):
            value = getattr(self, name)
            if value is not None:
                checked_number(name, value, unit="", at_most=1, zero_allowed=True)


@dataclasses.dataclass(frozen=True)
class Decision:
    """A decision and why.

    Attributes:
        action: WAIT, PROMOTE or ROLLBACK.
        reasons: For a rollback, each gate that failed with its numbers; else empty.
        numbers: The canary's and the stable model's numbers the decision read.
    """

    action: Action
    reasons: Tuple[str, ...] = ()
    numbers: Dict[str, object] = dataclasses.field(default_factory=dict)

    def describe(self) -> str:
        """Returns one line: the action, the failed gates, the numbers."""
        why = f" because {'; '.join(self.reasons)}" if self.reasons else ""
        return f"{self.action.value}{why} ({self.numbers})"


def decide(
    canary: RoleStats, stable: RoleStats, gates: RolloutGates, elapsed_seconds: float
) -> Decision:
    """Decides whether the canary is promoted, rolled back, or watched longer.

    Args:
        canary: The canary's (or shadow's) combined statistics.
        stable: The stable model's over the same time.
        gates: The bounds.
        elapsed_seconds: Seconds since the canary started serving.

    Returns:
        The decision; a rollback names every gate that failed and its numbers.
    """
    quantile = gates.latency_quantile
    numbers: Dict[str, object] = {
        "canary": canary.summary(quantile),
        "stable": stable.summary(quantile),
    }
    if canary.errors > gates.max_error_rate * gates.min_predictions:
        reason = (
            f"{canary.errors} errors already exceed max_error_rate {gates.max_error_rate:g} "
            f"of min_predictions {gates.min_predictions}"
        )
        return Decision(Action.ROLLBACK, (reason,), numbers)
    timed_out = gates.max_seconds is not None and elapsed_seconds >= gates.max_seconds
    if canary.answered < gates.min_predictions and not (timed_out and canary.answered):
        return Decision(Action.WAIT, (), numbers)
    reasons = _failed_gates(canary, stable, gates)
    if reasons:
        return Decision(Action.ROLLBACK, reasons, numbers)
    unlabelled = _waiting_for_labels(canary, stable, gates)
    if unlabelled is None:
        return Decision(Action.PROMOTE, (), numbers)
    if timed_out:
        return Decision(Action.ROLLBACK, (f"{unlabelled} after max_seconds",), numbers)
    return Decision(Action.WAIT, (), numbers)


def _waiting_for_labels(
    canary: RoleStats, stable: RoleStats, gates: RolloutGates
) -> Optional[str]:
    """Why the accuracy gate cannot pass yet (too few labels), or None when it can."""
    if gates.max_accuracy_drop is None:
        return None
    for name, stats in (("canary", canary), ("stable", stable)):
        if stats.labelled < gates.min_labelled:
            return (
                f"only {stats.labelled} labelled {name} predictions < min_labelled "
                f"{gates.min_labelled}"
            )
    return None


def _failed_gates(canary: RoleStats, stable: RoleStats, gates: RolloutGates) -> Tuple[str, ...]:
    reasons = []
    if canary.error_rate > gates.max_error_rate:
        reasons.append(
            f"error rate {canary.error_rate:.4f} > max_error_rate {gates.max_error_rate:g}"
        )
    quantile = gates.latency_quantile
    latency = canary.latency_ms(quantile)
    stable_latency = stable.latency_ms(quantile)
    label = f"p{quantile * 100:g} latency"
    if gates.max_latency_ms is not None and latency is not None and latency > gates.max_latency_ms:
        reasons.append(f"{label} {latency:.1f} ms > max_latency_ms {gates.max_latency_ms:g}")
    if (
        gates.max_latency_ratio is not None
        and latency is not None
        and stable_latency is not None
        and latency > gates.max_latency_ratio * stable_latency
    ):
        reasons.append(
            f"{label} {latency:.1f} ms > {gates.max_latency_ratio:g} x stable's "
            f"{stable_latency:.1f} ms"
        )
    agreement = canary.agreement
    if gates.min_agreement is not None and agreement is not None and (
        agreement < gates.min_agreement
    ):
        reasons.append(f"agreement {agreement:.4f} < min_agreement {gates.min_agreement:g}")
    accuracy, stable_accuracy = canary.accuracy, stable.accuracy
    if (
        gates.max_accuracy_drop is not None
        and _waiting_for_labels(canary, stable, gates) is None
        and accuracy is not None
        and stable_accuracy is not None
        and accuracy < stable_accuracy - gates.max_accuracy_drop
    ):
        reasons.append(
            f"accuracy {accuracy:.4f} < stable's {stable_accuracy:.4f} - max_accuracy_drop "
            f"{gates.max_accuracy_drop:g}"
        )
    return tuple(reasons)
