"""`ConfiguredRunInference`: liveinference's RunInference built from plain values.

This is the one transform the expansion service exposes (by its qualified name,
`TRANSFORM_NAME`), and what Python users call to get exactly what Java users get. It holds no
inference logic: it checks the plain values, builds a handler and `liveinference.RunInference`,
and types the outputs as portable Rows. Every check runs in the constructor, so a bad request
fails when the pipeline is built, with a message that names the argument.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import apache_beam as beam

from liveinference import KeyedModelHandler, ModelHandler, RunInference
from liveinference.settings import checked_number
from liveinference_expansion.crossing import CrossingBatches
from liveinference_expansion.handlers import as_plain, build_handler, build_keyed_handler
from liveinference_expansion.policy import Policy, current_policy
from liveinference_expansion.rows import (
    DEAD_LETTER_TYPE,
    ToPredictionRow,
    dead_letter_row,
    parse_type,
    prediction_row_type,
)
from liveinference_expansion.updates import ReadModelUpdates, prepared_canaries, split_inputs

__all__ = ["PREDICTIONS", "DEAD_LETTERS", "TRANSFORM_NAME", "ConfiguredRunInference"]

TRANSFORM_NAME = "liveinference_expansion.transform.ConfiguredRunInference"
PREDICTIONS = "predictions"
DEAD_LETTERS = "dead_letters"
_DLQ_FIELDS = ("failed_inferences", "failed_preprocessing", "failed_postprocessing",
               "failed_model_loads")


class _OnValue:
    """Applies a function to the value of a `(key, value)` pair (keyed input)."""

    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def __call__(self, pair: Tuple[Any, Any]) -> Tuple[Any, Any]:
        key, value = pair
        return key, self._fn(value)


def _identity(element: Any) -> Any:
    return element


def _function_names(value: Any, what: str) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise TypeError(
            f"{what} must be a list of qualified function names (strings), got {value!r}"
        )
    return list(value)


def _check(name: str, value: Any, kind: Union[type, Tuple[type, ...]], expected: str) -> None:
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise TypeError(f"{name} must be {expected}, got bool {value!r}")
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")


class ConfiguredRunInference(beam.PTransform):
    """liveinference's RunInference, configured from plain values.

    The output is a PCollection of Rows `(example, inference, model_id)` of the declared
    types (pairs `(key, Row)` with `keyed=True`); with `exception_handling=True` it is a dict
    with that PCollection under "predictions" and Rows `(element, stage, error)` of every
    dead letter (preprocessing, model load, inference, postprocessing, malformed model
    updates) under "dead_letters".

    The input is the PCollection of elements, or a dict of it under "examples" and model
    update messages under "model_updates" (JSON such as `{"model_path": ..., "model_name":
    ...}`, plain paths, or Rows with those fields; see `updates.ReadModelUpdates`): each
    update names the model to serve from then on.

    Args:
        handler: A handler name, a key of `handlers.HANDLERS` ("sklearn_numpy",
            "onnx_numpy", "xgboost_numpy", "huggingface_pipeline", ...); None with `key_models`.
        handler_args: The handler's keyword arguments as plain values (a dict, or a Row from
            Java); callables by qualified name, enums by member name.
        example_type: The type of `example` in the output: "int64", "int32", "double",
            "float", "string", "boolean", "bytes" or "array<...>" of one of them.
        inference_type: The type of `inference` in the output, likewise.
        preprocess: Qualified names of functions applied to each element, in order.
        postprocess: Qualified names of functions applied to each PredictionResult, in
            order; each must return a PredictionResult.
        watch_model_pattern: A file pattern watched for new model versions.
        interval: Seconds between two looks at `watch_model_pattern`.
        canary_examples: Input elements (before preprocessing; `(key, example)` pairs or
            Rows `(key, value)` with `keyed`) every new model version must predict without
            raising before it may serve; one that fails is dead-lettered at "validate".
        refresh_channel: Where model updates are relayed to the workers, a folder every
            worker can read and write; defaults as in `liveinference.RunInference`.
        exception_handling: Dead-letter failing elements instead of failing the pipeline.
        keyed: Input elements are `(key, example)` pairs; functions apply to the example.
        key_type: The type of the keys, with `keyed`.
        key_models: Instead of `handler`, with `keyed`: a model per key, as mappings
            `{"keys": [...], "handler": name, "handler_args": {...}}`.
        max_models_per_worker_hint: With `key_models`, the most models a worker keeps loaded.
        crossing_batch: Each input element is a batch of examples (an iterable, as the Java
            wrapper's `withCrossingBatch` sends them), scored through `on_batches()`; each
            prediction output element is then an iterable of prediction Rows (see
            `crossing.CrossingBatches`). Unkeyed only, without postprocess functions.
        policy: Which functions may be named; defaults to the process's (`set_policy`).

    Raises:
        ValueError: for an unknown handler or type name, an interval without a pattern, an
            interval that is not a finite positive number of seconds, or a canary example
            the preprocess functions refuse.
        TypeError: for an argument of the wrong type, or an unknown handler argument.
        PermissionError: for a function outside the allowed modules, or refused inline source.
        FileNotFoundError: for a local model file that does not exist.
    """

    def __init__(
        self,
        handler: Optional[str] = None,
        handler_args: Optional[Mapping[str, Any]] = None,
        *,
        example_type: str = "array<double>",
        inference_type: str = "int64",
        preprocess: Optional[Sequence[str]] = None,
        postprocess: Optional[Sequence[str]] = None,
        watch_model_pattern: Optional[str] = None,
        interval: Optional[float] = None,
        exception_handling: bool = False,
        keyed: bool = False,
        key_type: str = "string",
        key_models: Optional[Sequence[Any]] = None,
        max_models_per_worker_hint: Optional[int] = None,
        canary_examples: Optional[Sequence[Any]] = None,
        refresh_channel: Optional[str] = None,
        crossing_batch: bool = False,
        policy: Optional[Policy] = None,
    ) -> None:
        super().__init__()
        policy = policy or current_policy()
        if (handler is None) == (key_models is None) or (key_models is not None and not keyed):
            raise ValueError(
                "give either handler (a handler name) or, with keyed=True, key_models (a "
                f"model per key); got handler={handler!r}, key_models={key_models!r}, "
                f"keyed={keyed!r}"
            )
        if handler is not None:
            _check("handler", handler, str, "a handler name (a string)")
        _check("exception_handling", exception_handling, bool, "a boolean")
        _check("keyed", keyed, bool, "a boolean")
        _check("crossing_batch", crossing_batch, bool, "a boolean")
        row_type = prediction_row_type(
            parse_type(example_type, "example_type"), parse_type(inference_type, "inference_type")
        )
        self._output_type: Any = (
            Tuple[parse_type(key_type, "key_type"), row_type] if keyed else row_type
        )
        self._refresh = self._refresh_kwargs(watch_model_pattern, interval)
        if refresh_channel is not None:
            _check("refresh_channel", refresh_channel, str, "a folder (a string)")
            self._refresh["refresh_channel"] = refresh_channel
        pre = [policy.resolve(spec, f"preprocess[{index}]")
               for index, spec in enumerate(_function_names(preprocess, "preprocess"))]
        post = [policy.resolve(spec, f"postprocess[{index}]")
                for index, spec in enumerate(_function_names(postprocess, "postprocess"))]
        model_handler: ModelHandler
        if key_models is not None:
            model_handler = build_keyed_handler(key_models, policy, max_models_per_worker_hint)
        else:
            model_handler = build_handler(str(handler), handler_args or {}, policy)
        if crossing_batch:
            CrossingBatches.check(keyed, post)
        if keyed:
            if key_models is None:
                model_handler = KeyedModelHandler(model_handler)
            pre = [_OnValue(fn) for fn in pre]
            post = [_OnValue(fn) for fn in post]
        # Functions added later run first, as in Beam: add them last to first.
        for fn in reversed([] if crossing_batch else pre):
            model_handler = model_handler.with_preprocess_fn(fn)
        for fn in post:
            model_handler = model_handler.with_postprocess_fn(fn)
        row_fn = ToPredictionRow(
            parse_type(example_type, "example_type"),
            parse_type(inference_type, "inference_type"),
            keyed,
        )
        self._crossing: Optional[CrossingBatches] = None
        self._handler = model_handler.with_postprocess_fn(row_fn)
        if crossing_batch:
            # Preprocessing and Rows per row around on_batches(), one element per batch.
            self._crossing = CrossingBatches(
                pre, row_fn, exception_handling, model_handler.get_model_id()
            )
            self._handler = model_handler
            self._output_type = Iterable[row_type]  # type: ignore[valid-type]
        self._exception_handling = exception_handling
        self._canaries = (
            None if canary_examples is None else prepared_canaries(canary_examples, pre, keyed)
        )
        # Build RunInference now, so that its own checks fail at construction too.
        self._run_inference = self._build(None)
        self._config = {
            "handler": handler,
            "handler_args": as_plain(handler_args) or {},
            "example_type": example_type,
            "inference_type": inference_type,
            "preprocess": list(_function_names(preprocess, "preprocess")),
            "postprocess": list(_function_names(postprocess, "postprocess")),
            "watch_model_pattern": watch_model_pattern,
            "interval": interval,
            "exception_handling": exception_handling,
            "keyed": keyed,
            "key_models": as_plain(key_models),
            "canary_examples": as_plain(canary_examples),
            "refresh_channel": refresh_channel,
            "crossing_batch": crossing_batch,
        }

    def _build(self, updates: Optional[beam.PCollection]) -> RunInference:
        transform = RunInference(self._handler, model_metadata_pcoll=updates, **self._refresh)
        if self._crossing is not None:
            transform = transform.on_batches(postprocess_fn=self._crossing.postprocess_fn)
        if self._canaries is not None:
            transform = transform.with_model_validation(canary_examples=self._canaries)
        if self._exception_handling:
            transform = transform.with_exception_handling()
        return transform

    @staticmethod
    def _refresh_kwargs(pattern: Any, interval: Any) -> Dict[str, Any]:
        if pattern is None:
            if interval is not None:
                raise ValueError(
                    f"interval={interval!r} was given without watch_model_pattern; give the "
                    "file pattern to watch as well, or drop the interval"
                )
            return {}
        _check("watch_model_pattern", pattern, str, "a file pattern (a string)")
        kwargs: Dict[str, Any] = {"watch_model_pattern": pattern}
        if interval is not None:
            kwargs["interval"] = checked_number("interval", interval)
        return kwargs

    def annotations(self) -> Dict[str, Any]:
        """Names the configuration in the pipeline graph."""
        return {"liveinference_config": repr(self._config), **super().annotations()}

    def expand(self, inputs: Any) -> Any:
        pcoll, messages = split_inputs(inputs)
        transform, failed_updates = self._run_inference, None
        if messages is not None:
            updates, failed_updates = messages | "ModelUpdates" >> ReadModelUpdates(
                self._exception_handling, self._handler.get_model_id()
            )
            transform = self._build(updates)
        failed_preprocessing = None
        if self._crossing is not None:
            pcoll, failed_preprocessing = self._crossing.prepare(pcoll)
        if not self._exception_handling:
            results = pcoll | "RunInference" >> transform
            return results | "AsRows" >> beam.Map(_identity).with_output_types(self._output_type)
        results, dlq = pcoll | "RunInference" >> transform
        predictions = results | "AsRows" >> beam.Map(_identity).with_output_types(
            self._output_type
        )
        parts: List[beam.PCollection] = []
        for field in _DLQ_FIELDS:
            value = getattr(dlq, field, None)
            if isinstance(value, beam.PCollection):
                parts.append(value)
            elif value:
                parts.extend(v for v in value if isinstance(v, beam.PCollection))
        parts.extend(p for p in (failed_updates, failed_preprocessing) if p is not None)
        dead_letters = (
            parts
            | "AllDeadLetters" >> beam.Flatten()
            | "DeadLetterRows" >> beam.Map(dead_letter_row).with_output_types(DEAD_LETTER_TYPE)
        )
        return {PREDICTIONS: predictions, DEAD_LETTERS: dead_letters}
