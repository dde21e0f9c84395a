"""How RunInference batches examples: Beam's `BatchElements`, plus Beam 2.77's handler arguments.

A handler's `batch_elements_kwargs()` names `BatchElements` arguments. Beam 2.77's handlers
add three that Beam 2.62's `BatchElements` lacks, and that 2.77's cannot take either
(`max_batch_weight`) or heeds only with `max_batch_duration_secs` (the length ones):

- `length_fn` with `bucket_boundaries` (a handler's `batch_length_fn` and
  `batch_bucket_boundaries`): examples are sorted into length buckets, lower-inclusive as
  in Beam (for boundaries [10, 50]: below 10, 10 to 49, 50 and up; by default
  [16, 32, 64, 128, 256, 512]), and each bucket is batched on its own, so a batch holds
  examples of similar length and needs little padding. Beam 2.77 buckets only with
  `max_batch_duration_secs`; here buckets are kept with or without it.
- `max_batch_weight` (with `element_size_fn`): a batch whose examples weigh more in all is
  split, in order, into batches under the weight; an example heavier than the limit on
  its own is a batch of one.

Everything else goes to `beam.BatchElements` as given (`element_size_fn` included: there,
as in Beam, batch sizes count the examples' sizes), so this runs the same on Beam 2.62 and
2.77. Built only from Beam's public transforms: `Partition`, `BatchElements`, `Flatten`.
The batches are labelled for `batch_coder.ExampleBatchCoder`, which Beam sizes cheaply.
"""

from __future__ import annotations

import bisect
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

import apache_beam as beam

from liveinference.batch_coder import label_batches
from liveinference.settings import checked_number

__all__ = [
    "DEFAULT_BUCKET_BOUNDARIES",
    "HANDLER_BATCHING_ARGUMENTS",
    "HandlerBatching",
    "check_batching",
    "handler_batching_kwargs",
    "length_bucket",
]

DEFAULT_BUCKET_BOUNDARIES = (16, 32, 64, 128, 256, 512)
# A handler constructor's batching arguments (Beam 2.77's), by their BatchElements names.
_BEAM_NAMES = {
    "min_batch_size": "min_batch_size",
    "max_batch_size": "max_batch_size",
    "max_batch_duration_secs": "max_batch_duration_secs",
    "max_batch_weight": "max_batch_weight",
    "element_size_fn": "element_size_fn",
    "batch_length_fn": "length_fn",
    "batch_bucket_boundaries": "bucket_boundaries",
}
HANDLER_BATCHING_ARGUMENTS = tuple(_BEAM_NAMES)


def handler_batching_kwargs(**given: Any) -> Dict[str, Any]:
    """Returns a handler constructor's batching arguments that were set (not None), checked,
    under the names `BatchElements` and `HandlerBatching` take, as Beam 2.77's
    `ModelHandler.__init__` keeps them for `batch_elements_kwargs()`.

    Args:
        **given: Any of `HANDLER_BATCHING_ARGUMENTS` (`min_batch_size`,
            `max_batch_size`, `max_batch_duration_secs`, `max_batch_weight`,
            `element_size_fn`, `batch_length_fn`, `batch_bucket_boundaries`).

    Raises:
        TypeError: for another argument, or what `check_batching` refuses.
        ValueError: for what `check_batching` refuses.

    >>> handler_batching_kwargs(max_batch_size=8, batch_length_fn=len, max_batch_weight=None)
    {'max_batch_size': 8, 'length_fn': <built-in function len>}
    """
    unknown = sorted(set(given) - set(_BEAM_NAMES))
    if unknown:
        raise TypeError(f"{unknown} are not batching arguments; they are {list(_BEAM_NAMES)}")
    return check_batching(
        {_BEAM_NAMES[name]: value for name, value in given.items() if value is not None}
    )
_OURS = frozenset({"length_fn", "bucket_boundaries", "max_batch_weight"})


def check_batching(kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """Checks Beam 2.77's batching arguments, as `BatchElements` names them; returns a copy.

    Args:
        kwargs: `BatchElements` keyword arguments, with `length_fn`, `bucket_boundaries`
            and `max_batch_weight` allowed besides.

    Returns:
        The arguments, `bucket_boundaries` as a list.

    Raises:
        TypeError: if `length_fn` or `element_size_fn` is not callable, or a number is not
            a number.
        ValueError: if `max_batch_duration_secs` or `max_batch_weight` is not a finite
            positive number, `max_batch_weight` comes without `element_size_fn`, or
            `bucket_boundaries` comes without `length_fn` or is not a non-empty,
            increasing list of finite positive numbers.
    """
    checked = dict(kwargs)
    for name in ("length_fn", "element_size_fn"):
        if checked.get(name) is not None and not callable(checked[name]):
            raise TypeError(
                f"{name} must be a function of one example returning a number, "
                f"got {type(checked[name]).__name__} {checked[name]!r}"
            )
    if checked.get("max_batch_duration_secs") is not None:
        checked_number("max_batch_duration_secs", checked["max_batch_duration_secs"])
    if checked.get("max_batch_weight") is not None:
        checked_number("max_batch_weight", checked["max_batch_weight"], unit="")
    if checked.get("max_batch_weight") is not None and checked.get("element_size_fn") is None:
        raise ValueError(
            f"max_batch_weight={checked['max_batch_weight']!r} needs element_size_fn, the "
            "function that gives an example's weight (e.g. its number of tokens); pass it"
        )
    boundaries = checked.get("bucket_boundaries")
    if boundaries is not None:
        if checked.get("length_fn") is None:
            raise ValueError(
                "batch_bucket_boundaries needs batch_length_fn, the function that gives an "
                "example's length; pass it, or leave the boundaries out"
            )
        values = [checked_number("a batch bucket boundary", value, unit="") for value in boundaries]
        if not values or values != sorted(set(values)):
            raise ValueError(
                f"batch_bucket_boundaries must be a non-empty, increasing list of positive "
                f"numbers, got {list(boundaries)!r}"
            )
        checked["bucket_boundaries"] = list(boundaries)
    return checked


def length_bucket(length: float, boundaries: Sequence[float]) -> int:
    """Returns the bucket of a length: how many boundaries are at or below it (as Beam's
    `bisect_right`), so boundaries are lower-inclusive.

    >>> [length_bucket(n, [10, 50]) for n in (3, 10, 49, 50)]
    [0, 1, 1, 2]
    """
    return bisect.bisect_right(boundaries, length)


def _split_by_weight(
    batch: List[Any], most: float, weigh: Callable[[Any], float]
) -> Iterator[List[Any]]:
    """Splits a batch, in order, into batches weighing at most `most` (one heavy example
    may weigh more on its own)."""
    part: List[Any] = []
    weight = 0.0
    for example in batch:
        size = weigh(example)
        if part and weight + size > most:
            yield part
            part, weight = [], 0.0
        part.append(example)
        weight += size
    if part:
        yield part


class _ByLength(beam.PartitionFn):
    def __init__(self, length_fn: Callable[[Any], float], boundaries: Sequence[float]) -> None:
        self._length_fn, self._boundaries = length_fn, boundaries

    def partition_for(self, element: Any, num_partitions: int, *args: Any, **kwargs: Any) -> int:
        return length_bucket(self._length_fn(element), self._boundaries)


class HandlerBatching(beam.PTransform):
    """Batches examples as a handler's `batch_elements_kwargs()` asks, on any Beam 2.6x/2.7x.

    Args:
        **kwargs: `BatchElements` keyword arguments, plus `length_fn`, `bucket_boundaries`
            and `max_batch_weight` (see the module docstring).

    Raises:
        TypeError, ValueError: from `check_batching`, when the transform is built.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        checked = check_batching(kwargs)
        self._length_fn: Optional[Callable[[Any], float]] = checked.pop("length_fn", None)
        boundaries = checked.pop("bucket_boundaries", None)
        self._boundaries = list(boundaries or DEFAULT_BUCKET_BOUNDARIES)
        self._max_weight: Optional[float] = checked.pop("max_batch_weight", None)
        self._element_size_fn = checked.get("element_size_fn")
        self._kwargs = checked

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        # Every PCollection of batches is labelled, so that Beam sizes batches cheaply.
        example_type = pcoll.element_type
        if self._length_fn is None:
            batches = label_batches(
                pcoll | "Batch" >> beam.BatchElements(**self._kwargs), example_type
            )
        else:
            buckets = pcoll | "ByLength" >> beam.Partition(
                _ByLength(self._length_fn, self._boundaries), len(self._boundaries) + 1
            )
            batches = label_batches(
                [
                    label_batches(
                        bucket | f"Batch{index}" >> beam.BatchElements(**self._kwargs),
                        example_type,
                    )
                    for index, bucket in enumerate(buckets)
                ]
                | "AllBuckets" >> beam.Flatten(),
                example_type,
            )
        if self._max_weight is None:
            return batches
        split = batches | "SplitByWeight" >> beam.FlatMap(
            _split_by_weight, self._max_weight, self._element_size_fn
        )
        return label_batches(split, example_type)
