"""Model versions by event time, for a bounded `model_metadata_pcoll` (a batch or backfill).

Each element is served by the version whose event timestamp is the latest at or before the
element's own, as Beam's side inputs define it; elements older than every version are
served by the handler's own model. So re-running a backfill reproduces which model made
which prediction, whatever order the workers see the elements in.

`Timeline` orders the versions; each element travels to the inference step as `Routed`,
naming the chain of versions up to its own (`VersionChain`); `VersionModels` loads each
version once per worker process, and a version that fails to load or validate is reported
and its elements are served by the latest good version before it.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import dataclasses
import json
import logging
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from liveinference.contract import ModelHandler, ModelMetadata
from liveinference.deadletter import FailureRecord
from liveinference.refresh.loader import load_version
from liveinference.refresh.messages import Offer, encode_offer
from liveinference.refresh.slot import ModelSlot, ServingModel
from liveinference.refresh.sources import Version
from liveinference.refresh.validate import ModelValidation, ModelValidationError
from liveinference.timeouts import call_with_timeout

__all__ = ["EventVersion", "Routed", "Timeline", "VersionChain", "VersionModels", "by_version"]

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EventVersion:
    """One model version and the event time from which it serves.

    Attributes:
        micros: Its event timestamp, in microseconds since 1970 (Beam's resolution).
        offer: The model (ModelMetadata), or per-key models' new paths.
        key: What identifies it: its time and its JSON fields.
    """

    micros: int
    offer: Offer
    key: str

    @classmethod
    def of(cls, micros: int, offer: Offer) -> "EventVersion":
        """Returns the version of `offer` stamped at `micros`.

        Raises:
            ValueError: if `offer` is not a model event.
        """
        fields = json.dumps(encode_offer(offer), sort_keys=True)
        return cls(micros, offer, f"{micros}:{fields}")

    @property
    def model_id(self) -> str:
        """The id predictions served by this version carry."""
        return Version(self.offer, (self.key,)).model_id


@dataclasses.dataclass(frozen=True)
class VersionChain:
    """The versions up to one element's, oldest first; empty before the first version.

    Per-key versions build on the one before, and a version that fails falls back to the
    one before, so an element carries the whole chain.
    """

    versions: Tuple[EventVersion, ...] = ()

    @property
    def key(self) -> Tuple[str, ...]:
        """Identifies the chain: its versions' keys."""
        return tuple(version.key for version in self.versions)

    def previous(self) -> "VersionChain":
        """The chain without its latest version."""
        return VersionChain(self.versions[:-1])


@dataclasses.dataclass(frozen=True)
class Routed:
    """An element on its way to inference, with the chain of versions that serves it.

    Attributes:
        chain: The versions in effect at the element's event time.
        element: The element itself.
    """

    chain: VersionChain
    element: Any


class Timeline:
    """The versions of one side-input window, ordered by event time.

    Args:
        stamped: `(micros, offer)` pairs, in any order; repeated pairs count once.

    Raises:
        ValueError: if two different versions share an event timestamp: which one serves
            the elements from then on would be arbitrary.
    """

    def __init__(self, stamped: Sequence[Tuple[int, Offer]]) -> None:
        unique = {version.key: version for version in (EventVersion.of(*pair) for pair in stamped)}
        versions = sorted(unique.values(), key=lambda version: (version.micros, version.key))
        for earlier, later in zip(versions, versions[1:]):
            if earlier.micros == later.micros:
                raise ValueError(
                    f"model versions {earlier.model_id!r} and {later.model_id!r} share the event "
                    f"timestamp {earlier.micros / 1e6} s; in a bounded model_metadata_pcoll each "
                    "version serves from its own event time on, so give each ModelMetadata its "
                    "own timestamp, e.g. beam.Map(lambda m: beam.window.TimestampedValue(m, t))"
                )
        self._times = [version.micros for version in versions]
        self._chains = [VersionChain(tuple(versions[: end + 1])) for end in range(len(versions))]

    def chain_at(self, micros: int) -> VersionChain:
        """Returns the chain in effect at `micros`: up to the latest version at or before it."""
        index = bisect.bisect_right(self._times, micros)
        return self._chains[index - 1] if index else VersionChain()


def by_version(batch: Any) -> List[Tuple[VersionChain, List[Any]]]:
    """Splits a batch of `Routed` elements into one batch per chain, in order.

    A `Routed` alone (when batching is skipped, the element is a batch of its own) is one
    batch.
    """
    if isinstance(batch, Routed):
        return [(batch.chain, batch.element)]
    parts: Dict[Tuple[str, ...], Tuple[VersionChain, List[Any]]] = {}
    for routed in batch:
        part = parts.get(routed.chain.key)
        if part is None:
            part = parts[routed.chain.key] = (routed.chain, [])
        part[1].append(routed.element)
    return list(parts.values())


class VersionModels:
    """The versions one step's worker process has loaded, each once, shared by its threads.

    Args:
        handler: The step's handler; a copy of it loads each version.
        validation: Checks a version must pass before it serves, if any.
        load_timeout: The most seconds one load may take, if limited.
    """

    def __init__(
        self,
        handler: ModelHandler,
        validation: Optional[ModelValidation],
        load_timeout: Optional[float],
    ) -> None:
        self._handler = handler
        self._validation = validation
        self._load_timeout = load_timeout
        self._lock = threading.Lock()
        self._loads: Dict[Tuple[str, ...], "concurrent.futures.Future[Optional[ServingModel]]"] = {}

    def serving_for(
        self, chain: VersionChain, slot: ModelSlot, first: Callable[[], ServingModel]
    ) -> ServingModel:
        """Returns the model serving `chain`: its latest version if that one loads, else the
        latest good one before it, else the handler's own model (`first()`).

        Raises:
            Exception: whatever `first()` raises, when the handler's own model serves.
        """
        while chain.versions:
            loaded = self._loaded(chain, slot, first)
            if loaded is not None:
                return loaded
            chain = chain.previous()
        return first()

    def _loaded(
        self, chain: VersionChain, slot: ModelSlot, first: Callable[[], ServingModel]
    ) -> Optional[ServingModel]:
        """The chain's latest version, loaded on first use; None if it cannot serve."""
        with self._lock:
            loading = self._loads.get(chain.key)
            owner = loading is None
            if loading is None:
                loading = self._loads[chain.key] = concurrent.futures.Future()
        if not owner:
            return loading.result()
        try:
            loaded = self._load(chain, slot, first)
        except BaseException as error:
            with self._lock:  # not this version's fault (the model before it): retry later
                self._loads.pop(chain.key, None)
            loading.set_exception(error)
            raise
        loading.set_result(loaded)
        return loaded

    def _load(
        self, chain: VersionChain, slot: ModelSlot, first: Callable[[], ServingModel]
    ) -> Optional[ServingModel]:
        version = chain.versions[-1]
        # Per-key paths change some keys of the models before them; a model file stands alone.
        before = None
        if not isinstance(version.offer, ModelMetadata):
            before = self.serving_for(chain.previous(), slot, first)
        try:
            serving, report = call_with_timeout(
                lambda: load_version(
                    self._handler, before, Version(version.offer, (version.key,)), self._validation
                ),
                self._load_timeout,
                f"loading model {version.model_id}",
            )
        except Exception as error:  # a bad version is reported and skipped, never fatal
            stage = "validate" if isinstance(error, ModelValidationError) else "load_model"
            slot.record(FailureRecord.of(version.offer, stage, error, version.model_id))
            _LOG.warning(
                "rejected model %s (serving from event time %s s) at %s: %s; its elements are "
                "served by the latest good version before it",
                version.model_id,
                version.micros / 1e6,
                stage,
                error,
            )
            return None
        slot.record(report)
        _LOG.info(
            "loaded model %s, serving from event time %s s", version.model_id, version.micros / 1e6
        )
        return serving
