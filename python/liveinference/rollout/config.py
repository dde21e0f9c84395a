"""How a RunInference step rolls out a new model version: share, mode, seed and gates."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from liveinference.rollout.policy import RolloutGates
from liveinference.rollout.routing import Router

__all__ = ["RolloutConfig"]


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    """The rollout settings of one RunInference step (see `RunInference.with_rollout`).

    Attributes:
        canary_share: The share of elements (or keys) the new version serves as canary,
            or, in shadow mode, predicts a copy of.
        shadow: Run the new version in shadow: it predicts copies, and only the stable
            model's predictions go to the main output.
        seed: Changes which elements fall in the share.
        gates: When the new version is promoted or rolled back.
        decide_every: If set, one decision for all workers: a Beam combine sums their
            statistics, deciding after every `decide_every` batches' statistics, and the
            decision is published on `decisions`; else each worker decides on what it saw.
        controlled: Rollout commands (`rollout.control`) are published on `decisions`.
        labelled: Label statistics (`rollout.labels.JoinLabels`) join the shared decision.
        decisions: The run's rollout channel (an EventChannel), set when the step expands.

    Raises:
        TypeError, ValueError: if `canary_share` is not in (0, 1] or `decide_every` is not
            a positive int; ValueError if labels come without a shared decision or without
            the `max_accuracy_drop` gate, or that gate without labels.
    """

    canary_share: float = 0.1
    shadow: bool = False
    seed: int = 0
    gates: RolloutGates = dataclasses.field(default_factory=RolloutGates)
    decide_every: Optional[int] = None
    controlled: bool = False
    labelled: bool = False
    decisions: Any = None

    def __post_init__(self) -> None:
        self.router()  # checks the share
        every = self.decide_every
        if every is not None and (isinstance(every, bool) or not isinstance(every, int)):
            raise TypeError(f"decide_every must be an int (batches), got {every!r}")
        if every is not None and every < 1:
            raise ValueError(f"decide_every must be at least 1 batch, got {every}")
        self._check_labels()

    def _check_labels(self) -> None:
        accuracy_gate = self.gates.max_accuracy_drop is not None
        if self.labelled and not self.decides_together:
            raise ValueError(
                "labels reach the rollout decision through the shared decision: give "
                "with_rollout decide_every= as well"
            )
        if self.labelled and not accuracy_gate:
            raise ValueError(
                "labels are given but no gate reads them: set RolloutGates(max_accuracy_drop=...)"
            )
        if accuracy_gate and not self.labelled:
            raise ValueError(
                f"the gate max_accuracy_drop={self.gates.max_accuracy_drop} needs labels: give "
                "with_rollout labels=JoinLabels(labels, element_id, window_seconds)"
            )

    @property
    def decides_together(self) -> bool:
        """True when a Beam combine decides for all workers (see `decide_every`)."""
        return self.decide_every is not None

    @property
    def shared_decision(self) -> bool:
        """True when every worker follows the run's rollout channel: decisions made for all
        workers (`decide_every`), or commands (`controlled`)."""
        return self.decides_together or self.controlled

    def router(self) -> Router:
        """Returns the router that picks the new version's elements."""
        return Router(self.canary_share, self.seed)
