"""RunInference's event-time path, for a bounded `model_metadata_pcoll` in a batch pipeline.

A streaming pipeline keeps processing-time swaps (the refresher and the run's event
channel), whatever its model_metadata_pcoll: its inputs are live, and which model serves
an element is whichever is loaded when the element arrives.

The versions are collected as a side input (`AsList`, which every runner supports in batch
and streaming) with their event timestamps; each element is routed to the chain of versions
in effect at its own timestamp (refresh/event_versions.py) before batching; the inference
step splits each batch by version, so no batch mixes versions, and serves each part with
its version, loaded once per worker process.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.utils import shared

from liveinference.contract import ModelHandler
from liveinference.deadletter import ExceptionTypes
from liveinference.dofn import InferenceDoFn
from liveinference.refresh.config import RefreshConfig
from liveinference.refresh.event_versions import Routed, Timeline, VersionModels, by_version
from liveinference.refresh.slot import ModelSlot, ServingModel

__all__ = [
    "EventTimeInferenceDoFn",
    "RouteByEventTime",
    "by_event_time",
    "crashed_elements",
    "routed_batching",
]

# One VersionModels per step and worker process, shared by the step's threads.
_VERSIONS = shared.Shared()

# The handler's batching arguments that are functions of one example.
_EXAMPLE_FUNCTIONS = ("element_size_fn", "length_fn")


def by_event_time(
    model_metadata_pcoll: Optional[beam.PCollection], refresh: RefreshConfig, pipeline: Any
) -> bool:
    """Whether a step picks each element's model version by the element's event time.

    That is so for a bounded `model_metadata_pcoll` in a batch pipeline.

    Raises:
        ValueError: if such a step also watches a file pattern or rolls versions out
            gradually (both work by processing time).
    """
    if model_metadata_pcoll is None or not model_metadata_pcoll.is_bounded:
        return False
    if pipeline.options.view_as(StandardOptions).streaming:
        return False
    if refresh.watch_pattern:
        raise ValueError(
            "a bounded model_metadata_pcoll picks each element's model by event time, "
            f"watch_model_pattern={refresh.watch_pattern!r} by processing time; pass one of them"
        )
    if refresh.rollout is not None:
        raise ValueError(
            "with_rollout rolls new versions out as they arrive (processing time), while a "
            "bounded model_metadata_pcoll in a batch pipeline serves each version from its "
            "event time on; drop with_rollout, or run the pipeline with --streaming"
        )
    return True


def _stamped(offer: Any, timestamp: Any = beam.DoFn.TimestampParam) -> Any:
    return (timestamp.micros, offer)


class _Route(beam.DoFn):
    """Wraps each element as `Routed` with the versions in effect at its event time."""

    def __init__(self) -> None:
        self._versions: Optional[List[Any]] = None
        self._timeline: Optional[Timeline] = None

    def process(
        self,
        element: Any,
        versions: List[Any],
        timestamp: Any = beam.DoFn.TimestampParam,
    ) -> Iterator[Any]:
        if versions is not self._versions or self._timeline is None:
            self._timeline, self._versions = Timeline(versions), versions
        yield Routed(self._timeline.chain_at(timestamp.micros), element)


class RouteByEventTime(beam.PTransform):
    """Routes each element to the model versions in effect at its event timestamp.

    Args:
        model_metadata_pcoll: A bounded PCollection of timestamped ModelMetadata (or
            per-key path lists); an element sees the versions of its side-input window
            (all of them when both are in the global window).

    Raises:
        ValueError: at run time, if two different versions share an event timestamp.
    """

    def __init__(self, model_metadata_pcoll: beam.PCollection) -> None:
        super().__init__()
        self._versions = model_metadata_pcoll

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        stamped = self._versions | "StampVersions" >> beam.Map(_stamped)
        return pcoll | "Route" >> beam.ParDo(_Route(), beam.pvalue.AsList(stamped))


class _OnElement:
    """Applies a function of one example to a `Routed` element's example."""

    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def __call__(self, routed: Routed) -> Any:
        return self._fn(routed.element)


def routed_batching(kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """Returns batching arguments whose functions of one example read `Routed` elements."""
    return {
        name: _OnElement(value) if name in _EXAMPLE_FUNCTIONS and value is not None else value
        for name, value in kwargs.items()
    }


def crashed_elements(batch: Any, model_id: str) -> List[Tuple[Any, str]]:
    """Returns `(element, model_id)` for each element of a batch whose subprocess died.

    A `Routed` element names the version in effect at its event time (the process that
    knew whether that version loaded is gone); any other element gets `model_id`.
    """
    if isinstance(batch, Routed) or (batch and isinstance(batch[0], Routed)):
        return [
            (element, chain.versions[-1].model_id if chain.versions else model_id)
            for chain, part in by_version(batch)
            for element in part
        ]
    return [(element, model_id) for element in batch]


class EventTimeInferenceDoFn(InferenceDoFn):
    """Runs each batch of `Routed` elements, split by version, on the versions' models.

    Args are InferenceDoFn's; `refresh` gives the validation and load timeout each version
    loads with.
    """

    def __init__(
        self,
        handler: ModelHandler,
        namespace: str,
        model_tag: str,
        catch: Optional[ExceptionTypes],
        timeout: Optional[float],
        refresh: RefreshConfig,
    ) -> None:
        super().__init__(handler, namespace, model_tag, catch, timeout, refresh)
        self._versions: Optional[VersionModels] = None
        self._chain: Any = None

    def setup(self) -> None:
        super().setup()
        refresh = self._refresh
        self._versions = _VERSIONS.acquire(
            lambda: VersionModels(self._handler, refresh.validation, refresh.load_timeout),
            tag=f"{self._model_tag}-event-time",
        )

    def teardown(self) -> None:
        super().teardown()
        self._versions = None

    def _serving_model(self, slot: ModelSlot) -> ServingModel:
        assert self._versions is not None, "setup() has not run"
        return self._versions.serving_for(
            self._chain, slot, lambda: super(EventTimeInferenceDoFn, self)._serving_model(slot)
        )

    def process(
        self, batch: Sequence[Any], inference_args: Optional[Dict[str, Any]] = None
    ) -> Iterator[Any]:
        for chain, part in by_version(batch):
            self._chain = chain
            yield from super().process(part, inference_args)
