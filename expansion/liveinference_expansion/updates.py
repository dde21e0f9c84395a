"""Model updates and canary examples for `ConfiguredRunInference`, from plain values.

A client (Java, or any SDK) sends model updates as a second input PCollection: JSON strings
or bytes such as `{"model_path": "/models/v2.pkl", "model_name": "v2"}`, plain paths, or Rows
with a `model_path` field (and optionally `model_name`). `ReadModelUpdates` turns each into
the `ModelMetadata` that `RunInference(model_metadata_pcoll=...)` takes, through
liveinference's `model_metadata_from_message`; a malformed one becomes a dead letter at stage
`MODEL_UPDATE_STAGE` when exception handling is on, and fails the pipeline otherwise (as
`ModelMetadataFromMessages` does).

Canary examples arrive as the client's input elements; `prepared_canaries` runs the
transform's preprocess functions on them, so they reach the model as its batches do.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import apache_beam as beam

from liveinference.deadletter import FailureRecord
from liveinference.refresh.model_versions import model_metadata_from_message

__all__ = [
    "EXAMPLES",
    "MODEL_UPDATES",
    "MODEL_UPDATE_STAGE",
    "ReadModelUpdates",
    "prepared_canaries",
    "split_inputs",
]

EXAMPLES = "examples"
"""The input tag of the elements to run the model on, when model updates come too."""

MODEL_UPDATES = "model_updates"
"""The input tag of the model update messages."""

MODEL_UPDATE_STAGE = "model_update"
"""The stage a malformed model update message is dead-lettered at."""

_FAILED = "failed"


def split_inputs(
    inputs: Union[beam.PCollection, Mapping[str, beam.PCollection]],
) -> Tuple[beam.PCollection, Optional[beam.PCollection]]:
    """Returns the examples and the model updates (None without them) of the inputs.

    Args:
        inputs: One PCollection of examples, or a dict with exactly the keys `EXAMPLES` and
            `MODEL_UPDATES` (what the expansion service passes for a request with two
            inputs).

    Raises:
        ValueError: naming the tags, if the dict holds other keys.
    """
    if not isinstance(inputs, Mapping):
        return inputs, None
    if set(inputs) != {EXAMPLES, MODEL_UPDATES}:
        raise ValueError(
            f"ConfiguredRunInference takes one input, or two tagged {EXAMPLES!r} and "
            f"{MODEL_UPDATES!r}; got inputs tagged {sorted(inputs)}; tag the elements "
            f"{EXAMPLES!r} and the model update messages {MODEL_UPDATES!r}"
        )
    return inputs[EXAMPLES], inputs[MODEL_UPDATES]


def _as_message(element: Any) -> Any:
    """A Row becomes a dict of its set fields; strings, bytes and dicts stay as they are."""
    as_dict = getattr(element, "_asdict", None)
    if callable(as_dict) and not isinstance(element, Mapping):
        return {name: value for name, value in as_dict().items() if value is not None}
    return element


def _describe(element: Any) -> str:
    if isinstance(element, bytes):
        return element.decode("utf-8", errors="replace")
    return element if isinstance(element, str) else repr(_as_message(element))


class _ToModelMetadata(beam.DoFn):
    """Turns each update message into ModelMetadata; a malformed one into a FailureRecord."""

    def __init__(self, catch: bool, model_id: str) -> None:
        self._catch = catch
        self._model_id = model_id

    def process(self, element: Any) -> Iterator[Any]:
        try:
            message = _as_message(element)
            if not isinstance(message, (str, bytes, Mapping)):
                raise ValueError(
                    f"a model update must be a JSON string, bytes or a Row with a "
                    f"'model_path' field, got {type(element).__name__}"
                )
            metadata = model_metadata_from_message(message)
        except Exception as error:  # pylint: disable=broad-except
            if not self._catch:
                raise
            record = FailureRecord.of(
                _describe(element), MODEL_UPDATE_STAGE, error, self._model_id
            )
            yield beam.pvalue.TaggedOutput(_FAILED, record)
            return
        yield metadata


class ReadModelUpdates(beam.PTransform):
    """Turns update messages into the ModelMetadata of `RunInference(model_metadata_pcoll=)`.

    The output is a pair: the ModelMetadata, and the FailureRecords (stage
    `MODEL_UPDATE_STAGE`) of malformed messages, None unless `exception_handling`.

    Args:
        exception_handling: Dead-letter malformed messages instead of failing the pipeline.
        model_id: The id of the configured model, which the dead letters name.
    """

    def __init__(self, exception_handling: bool, model_id: str) -> None:
        super().__init__()
        self._catch = exception_handling
        self._model_id = model_id

    def expand(
        self, messages: beam.PCollection
    ) -> Tuple[beam.PCollection, Optional[beam.PCollection]]:
        parse = beam.ParDo(_ToModelMetadata(self._catch, self._model_id))
        if not self._catch:
            return messages | "ToModelMetadata" >> parse, None
        outputs = messages | "ToModelMetadata" >> parse.with_outputs(_FAILED, main="main")
        return outputs.main, outputs[_FAILED]


def _canary_example(canary: Any, keyed: bool, index: int) -> Any:
    if not keyed:
        return canary
    if isinstance(canary, (tuple, list)) and len(canary) == 2:
        return tuple(canary)
    key, value = getattr(canary, "key", None), getattr(canary, "value", None)
    if key is None or value is None:
        raise ValueError(
            f"canary_examples[{index}] is {canary!r}; with keyed=True each canary is a "
            "(key, example) pair, or a Row with fields 'key' and 'value'"
        )
    return key, value


def prepared_canaries(
    canaries: Any, preprocess: Sequence[Callable[[Any], Any]], keyed: bool
) -> List[Any]:
    """Runs the preprocess functions on each canary example, as on an input element.

    Args:
        canaries: A non-empty list of examples of the input's type (pairs with `keyed`).
        preprocess: The transform's preprocess functions, in the order they run.
        keyed: Whether input elements are `(key, example)` pairs.

    Returns:
        The canaries as the model receives them.

    Raises:
        TypeError: if `canaries` is not a non-empty list.
        ValueError: naming the canary and function, if a preprocess function fails on one.
    """
    if not isinstance(canaries, (list, tuple)) or not canaries:
        raise TypeError(
            f"canary_examples must be a non-empty list of input examples, got {canaries!r}"
        )
    prepared = []
    for index, canary in enumerate(canaries):
        example = _canary_example(canary, keyed, index)
        for position, fn in enumerate(preprocess):
            try:
                example = fn(example)
            except Exception as error:
                raise ValueError(
                    f"canary_examples[{index}] {canary!r} failed preprocess[{position}]: "
                    f"{type(error).__name__}: {error}; give canaries of the input's type "
                    "that the preprocess functions accept"
                ) from error
        prepared.append(example)
    return prepared
