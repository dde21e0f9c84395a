"""The rollout of one worker process: the candidate version, its statistics, and the act of
promoting or rolling it back.

The refresher stages a loaded version here instead of swapping it in; the DoFn serves the
candidate in its role, adds each batch's statistics, and asks `judge` after each batch.
A promotion swaps the candidate into the slot; a rollback drops it, queues a FailureRecord
(stage "rollout", naming the failed gates and the numbers) for failed_model_loads, and
keeps its fingerprint so the refresher does not load that file again until it changes.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any, Dict, Optional, Set, Tuple

from liveinference.contract import ModelMetadata
from liveinference.deadletter import FailureRecord
from liveinference.rollout.config import RolloutConfig
from liveinference.rollout.control import Command, command_of
from liveinference.rollout.policy import Action, Decision, decide
from liveinference.rollout.roles import CANARY, SHADOW, STABLE
from liveinference.rollout.stats import RoleStats

__all__ = ["ROLLOUT_STAGE", "CanaryRolledBack", "RolloutState", "rollback_error"]

ROLLOUT_STAGE = "rollout"

_LOG = logging.getLogger(__name__)

_ON_CHANNEL = "decided on the run's rollout channel, which every worker follows"


class CanaryRolledBack(RuntimeError):
    """A new model version failed its rollout gates: the message names them and the numbers."""


def rollback_error(model_id: str, decision: Decision) -> CanaryRolledBack:
    """Returns the error a rollback's dead letter carries: the failed gates and numbers."""
    return CanaryRolledBack(
        f"model {model_id} rolled back: {'; '.join(decision.reasons)}; numbers: "
        f"{decision.numbers}; it is not loaded again until its file changes"
    )


@dataclasses.dataclass(frozen=True)
class _Candidate:
    serving: Any  # the refresh slot's ServingModel
    fingerprint: Tuple[Any, ...]
    offer: Any
    since: float
    staged_at: float


class RolloutState:
    """The candidate of one slot and what it and the stable model did since it was staged.

    Args:
        config: The step's rollout settings.
    """

    def __init__(self, config: RolloutConfig) -> None:
        self.config = config
        self.router = config.router()
        self._lock = threading.Lock()
        self._candidate: Optional[_Candidate] = None
        self._stats: Dict[str, RoleStats] = {}
        self._settled: Set[Tuple[Any, ...]] = set()
        self._last_decision: Optional[str] = None
        self._previous: Any = None  # the ServingModel the last promotion replaced
        self._pinned = False
        self._held: Set[Tuple[Any, ...]] = set()  # versions waiting for an unpin

    def candidate(self) -> Any:
        """Returns the candidate's ServingModel, or None when no rollout is under way."""
        candidate = self._candidate
        return candidate.serving if candidate is not None else None

    def stage(self, serving: Any, fingerprint: Tuple[Any, ...], offer: Any) -> None:
        """Makes `serving` the candidate, replacing any earlier one; its stats start at zero.

        Args:
            serving: The loaded and validated ServingModel.
            fingerprint: Its version's fingerprint.
            offer: What its source offered (a failed rollout's dead letter shows it).
        """
        with self._lock:
            if self._pinned:
                self._held.add(fingerprint)
                _LOG.info("model %s waits: the rollout is pinned", serving.model_id)
                return
            self._candidate = _Candidate(
                serving, fingerprint, offer, time.monotonic(), time.time()
            )
            self._stats = {}
        mode = "shadow" if self.config.shadow else "canary"
        _LOG.info(
            "model %s starts as %s on %g of the elements",
            serving.model_id,
            mode,
            self.config.canary_share,
        )

    def staged_at(self) -> float:
        """Returns the Unix time the candidate was staged (now, if there is none)."""
        candidate = self._candidate
        return candidate.staged_at if candidate is not None else time.time()

    def excluded(self) -> Set[Tuple[Any, ...]]:
        """Fingerprints the refresher must not load again: the candidate's, those of
        versions already promoted or rolled back, and those waiting for an unpin."""
        candidate = self._candidate
        settled = self._settled | self._held
        return settled | {candidate.fingerprint} if candidate is not None else settled

    def add(self, model_id: str, role: str, stats: RoleStats) -> None:
        """Adds a batch's statistics of `role`; ignored if `model_id` is no longer in the
        rollout (the batch started before a promotion or rollback)."""
        with self._lock:
            candidate = self._candidate
            if candidate is None:
                return
            if (role == STABLE) == (model_id == candidate.serving.model_id):
                return
            self._stats[role] = self._stats.get(role, RoleStats()).merged(stats)

    def stats(self) -> Dict[str, RoleStats]:
        """Returns the statistics per role since the candidate was staged."""
        with self._lock:
            return dict(self._stats)

    def follow(self, slot: Any) -> None:
        """Acts on the newest message on the run's rollout channel: a decision made for all
        workers (`decide_every`) or a command (`rollout.control`); from the refresher's
        thread.

        Args:
            slot: The ModelSlot to promote into.

        Raises:
            OSError, PermissionError, ValueError: if the channel cannot be read (the
                refresher logs and polls again).
        """
        channel = self.config.decisions
        newest = channel.newest() if channel is not None else None
        if newest is None or newest == self._last_decision:
            return
        self._last_decision = newest
        read = channel.read(newest)
        command = command_of(read[0]) if read is not None else None
        if command is not None:
            self._obey(slot, *command)

    def _obey(self, slot: Any, model_id: str, command: Command) -> None:
        """Promotes, rolls back, pins or unpins as `command` says about `model_id`."""
        with self._lock:
            if command is Command.UNPIN:
                self._pinned = False
                self._held.clear()
            candidate = self._candidate
            if candidate is not None and candidate.serving.model_id == model_id:
                self._candidate = None
                self._settled.add(candidate.fingerprint)
            else:
                candidate = None
            if command is Command.PIN:
                self._pinned = True
                if self._candidate is not None:
                    self._held.add(self._candidate.fingerprint)
                    self._candidate = None
        if command is Command.UNPIN:
            _LOG.info("rollout unpinned: new model versions are rolled out again")
        elif candidate is not None and command is Command.ROLLBACK:
            _LOG.warning("rollback model %s: %s", model_id, _ON_CHANNEL)
        elif candidate is not None:
            self._promote(slot, candidate.serving)
            _LOG.info("%s model %s: %s", command.value, model_id, _ON_CHANNEL)
        else:
            self._go_back(slot, model_id, command)

    def _go_back(self, slot: Any, model_id: str, command: Command) -> None:
        """Serves the version the last promotion replaced again, when `command` asks it."""
        current, previous = slot.current(), self._previous
        current_id = current.model_id if current is not None else None
        if model_id == current_id and command is not Command.ROLLBACK:
            _LOG.info("%s model %s: it serves already", command.value, model_id)
            return
        previous_id = getattr(previous, "model_id", None)
        wanted = current_id if command is Command.ROLLBACK else previous_id
        if previous is None or command is Command.PROMOTE or model_id != wanted:
            _LOG.warning(
                "%s model %s ignored: the candidate is %s, the stable model %s, the one "
                "before it %s",
                command.value,
                model_id,
                self.candidate().model_id if self.candidate() is not None else None,
                current_id,
                previous_id,
            )
            return
        self._previous = slot.swap(previous)
        _LOG.warning(
            "%s model %s: back to model %s", command.value, model_id, previous.model_id
        )

    def _promote(self, slot: Any, serving: Any) -> None:
        """Swaps `serving` in, keeping the model it replaces for a rollback by hand."""
        self._previous = slot.swap(serving)

    def judge(self, slot: Any) -> Optional[Decision]:
        """Decides on the candidate from this process's statistics and acts on it.

        Args:
            slot: The ModelSlot to promote into and to record a rollback on.

        Returns:
            The decision, or None when there is no candidate.
        """
        with self._lock:
            candidate = self._candidate
            if candidate is None:
                return None
            new_role = SHADOW if self.config.shadow else CANARY
            decision = decide(
                self._stats.get(new_role, RoleStats()),
                self._stats.get(STABLE, RoleStats()),
                self.config.gates,
                time.monotonic() - candidate.since,
            )
            if decision.action is Action.WAIT:
                return decision
            self._candidate = None
            self._settled.add(candidate.fingerprint)
        self._act(slot, candidate, decision)
        return decision

    def _act(self, slot: Any, candidate: _Candidate, decision: Decision) -> None:
        model_id = candidate.serving.model_id
        if decision.action is Action.PROMOTE:
            self._promote(slot, candidate.serving)
            _LOG.info("promoted model %s: %s", model_id, decision.describe())
            return
        error = rollback_error(model_id, decision)
        slot.record(FailureRecord.of(candidate.offer, ROLLOUT_STAGE, error, model_id))
        current = slot.current()
        _LOG.warning(
            "rolled back model %s: %s; still serving %s",
            model_id,
            decision.describe(),
            current.model_id if current is not None else "the first model",
        )
