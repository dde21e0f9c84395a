"""How a RunInference step rolls out a new model version: share, mode, seed and gates."""

from __future__ import annotations

import dataclasses

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

    Raises:
        TypeError, ValueError: if `canary_share` is not in (0, 1].
    """

    canary_share: float = 0.1
    shadow: bool = False
    seed: int = 0
    gates: RolloutGates = dataclasses.field(default_factory=RolloutGates)

    def __post_init__(self) -> None:
        self.router()  # checks the share

    def router(self) -> Router:
        """Returns the router that picks the new version's elements."""
        return Router(self.canary_share, self.seed)
