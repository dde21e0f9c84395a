"""TensorFlow handlers: numpy arrays or tf.Tensors in, the model's outputs out.

With `ModelType.SAVED_MODEL`, what is at `model_uri` picks the loader:

- a Keras 3 `.keras` file or a legacy `.h5` file: `tf.keras.models.load_model`;
- a SavedModel directory (it holds `saved_model.pb`; written by `tf.saved_model.save` or
  `model.export`): `tf.saved_model.load`. Keras 3 cannot load these as Keras models, so
  the handler wraps the loaded object in a `SavedModelCallable`, which calls its
  `serving_default` signature (or the object itself when it has no signature but is
  callable) and so takes a batch as a Keras model does.

With `ModelType.SAVED_WEIGHTS`, `create_model_fn()` builds the Keras model and its
weights are read from `model_uri` (a `.weights.h5` file, or a `.keras`/`.h5` file).

This module holds how to load and call a TensorFlow model; stacking and everything else a
handler does come from `base.FrameworkHandler` and `batches`.
"""

from __future__ import annotations

import enum
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy
import tensorflow as tf

from liveinference.contract import PredictionResult
from liveinference.errors import InvalidExampleError, ModelLoadError
from liveinference.frameworks.base import FrameworkHandler
from liveinference.frameworks.batches import stack, to_prediction_results
from liveinference.frameworks.loading import load_step

__all__ = [
    "ModelType",
    "SavedModelCallable",
    "TFModelHandlerNumpy",
    "TFModelHandlerTensor",
    "default_numpy_inference_fn",
    "default_tensor_inference_fn",
]

TensorInferenceFn = Callable[
    [Any, Sequence[Union[numpy.ndarray, tf.Tensor]], Dict[str, Any], Optional[str]],
    Iterable[PredictionResult],
]

_FORMATS = (
    "a Keras 3 `.keras` file, a legacy `.h5` file or a SavedModel directory "
    "(one holding saved_model.pb)"
)
_SERVING_SIGNATURE = "serving_default"
_KERAS_ONLY_LOAD_ARGS = frozenset({"compile", "custom_objects", "safe_mode"})


class ModelType(enum.Enum):
    """What `model_uri` holds: a whole saved model, or only weights for `create_model_fn`."""

    SAVED_MODEL = 1
    SAVED_WEIGHTS = 2


class SavedModelCallable:
    """A SavedModel directory loaded with `tf.saved_model.load`, called like a Keras model.

    Calling it with a batch calls the `serving_default` signature, with the batch cast to
    the dtype of the signature's input; a signature with one output returns that output,
    one with several returns the dict of outputs. A SavedModel without that signature is
    called directly, so it must be callable.

    Args:
        loaded: What `tf.saved_model.load` returned.
        path: Where it was loaded from, for error messages.

    Attributes:
        loaded: What `tf.saved_model.load` returned, for a custom `inference_fn` that
            needs another signature or function of the SavedModel.

    Raises:
        ModelLoadError: if the SavedModel has no `serving_default` signature and is not
            callable.
    """

    def __init__(self, loaded: Any, path: str) -> None:
        signature = getattr(loaded, "signatures", {}).get(_SERVING_SIGNATURE)
        if signature is None and not callable(loaded):
            raise ModelLoadError(
                f"SavedModel {path!r} has no {_SERVING_SIGNATURE!r} signature and is not "
                "callable; save it with model.export(path), or with tf.saved_model.save("
                "module, path, signatures=...)"
            )
        self.loaded = loaded
        self._signature = signature
        self._input_specs: Dict[str, Any] = (
            dict(signature.structured_input_signature[1]) if signature is not None else {}
        )

    @property
    def input_shape(self) -> Optional[tuple]:
        """Returns the batched input shape of the signature, if it has a single input."""
        if len(self._input_specs) != 1:
            return None
        (spec,) = self._input_specs.values()
        return tuple(spec.shape)

    def __call__(self, batch: Any, **kwargs: Any) -> Any:
        """Runs the SavedModel on `batch`.

        Args:
            batch: The stacked examples.
            **kwargs: The signature's other inputs, or keyword arguments of the callable.

        Returns:
            The output tensor, or a dict of output tensors by name.

        Raises:
            InvalidExampleError: if the signature has more than one input left once
                `kwargs` are given, so the batch fits none of them.
        """
        if self._signature is None:
            return self.loaded(batch, **kwargs)
        free = [name for name in self._input_specs if name not in kwargs]
        if len(free) != 1:
            raise InvalidExampleError(
                f"the {_SERVING_SIGNATURE!r} signature takes inputs {sorted(self._input_specs)}; "
                "give all but one of them in inference_args, and the batch fills the other"
            )
        (name,) = free
        inputs = {name: tf.cast(batch, self._input_specs[name].dtype), **kwargs}
        outputs = self._signature(**inputs)
        return next(iter(outputs.values())) if len(outputs) == 1 else outputs


def _require_exists(path: str, what: str) -> None:
    with load_step(f"cannot check {what} {path!r}", "check that the workers can read it"):
        found = tf.io.gfile.exists(path)
    if not found:
        raise ModelLoadError(
            f"{what} {path!r} does not exist; check the path, or that the workers can see it "
            "(a local path must exist on every worker)"
        )


def _load_saved_model_directory(path: str, load_model_args: Dict[str, Any]) -> SavedModelCallable:
    if not any(
        tf.io.gfile.exists(tf.io.gfile.join(path, name))
        for name in ("saved_model.pb", "saved_model.pbtxt")
    ):
        raise ModelLoadError(
            f"directory {path!r} holds no saved_model.pb, so it is not a SavedModel; "
            f"model_uri must be {_FORMATS}"
        )
    args = {key: value for key, value in load_model_args.items()
            if key not in _KERAS_ONLY_LOAD_ARGS}
    with load_step(
        f"cannot load SavedModel {path!r}",
        "re-export it with model.export(path) or tf.saved_model.save(module, path)",
    ):
        loaded = tf.saved_model.load(path, **args)
    return SavedModelCallable(loaded, path)


def _load_keras_file(path: str, load_model_args: Dict[str, Any]) -> Any:
    with load_step(
        f"cannot load {path!r} as a Keras model",
        f"model_uri must be {_FORMATS}; write one with model.save('model.keras') or "
        "model.export(directory)",
    ):
        return tf.keras.models.load_model(path, **load_model_args)


def _load_weights(model: Any, path: str) -> Any:
    _require_exists(path, "weights file")
    if not callable(getattr(model, "load_weights", None)):
        raise ModelLoadError(
            f"cannot load weights {path!r} into a {type(model).__name__}, which has no "
            "load_weights(); weights need a Keras model (a .keras or .h5 model_uri, or "
            "ModelType.SAVED_WEIGHTS with create_model_fn)"
        )
    with load_step(
        f"cannot load weights {path!r} into the {type(model).__name__}",
        "save the weights with model.save_weights('model.weights.h5') from a model of the "
        "same architecture, built (given an Input) before loading",
    ):
        model.load_weights(path)
    return model


def _load(
    model_uri: str,
    model_type: ModelType,
    create_model_fn: Optional[Callable[[], Any]],
    load_model_args: Dict[str, Any],
    custom_weights: str,
) -> Any:
    if model_type == ModelType.SAVED_WEIGHTS and create_model_fn is not None:
        try:
            model = create_model_fn()
        except Exception as error:
            raise ModelLoadError(
                f"create_model_fn raised {type(error).__name__}: {error}; it must return "
                f"the Keras model whose weights are in {model_uri!r}"
            ) from error
        return _load_weights(model, model_uri)
    _require_exists(model_uri, "model")
    if tf.io.gfile.isdir(model_uri):
        model = _load_saved_model_directory(model_uri, load_model_args)
    else:
        model = _load_keras_file(model_uri, load_model_args)
    return _load_weights(model, custom_weights) if custom_weights else model


def _expected_example_shape(model: Any) -> Optional[tuple]:
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        return None
    return tuple(shape[1:]) if isinstance(shape, tuple) and shape else None


def _call(model: Any, stacked: Any, inference_args: Dict[str, Any]) -> Any:
    try:
        return model(stacked, **inference_args)
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as error:
        expected = _expected_example_shape(model)
        seen = tuple(stacked.shape[1:])
        if expected is None or tf.TensorShape(expected).is_compatible_with(seen):
            raise
        raise InvalidExampleError(
            f"the model expects examples of shape {expected}, got {seen}; reshape the "
            "examples before RunInference"
        ) from error


def _split(predictions: Any) -> Any:
    """Splits batched outputs into one item per example, keeping tensors as tensors.

    `tf.unstack` is one op for the whole batch; iterating a tensor would be one per row.
    """
    if isinstance(predictions, tf.Tensor) and predictions.shape.rank:
        return tf.unstack(predictions)
    if isinstance(predictions, dict):
        return {name: _split(values) for name, values in predictions.items()}
    if isinstance(predictions, (list, tuple)) and all(
        isinstance(output, tf.Tensor) for output in predictions
    ):
        return list(zip(*map(_split, predictions)))
    return predictions


def default_numpy_inference_fn(
    model: Any, batch: Sequence[numpy.ndarray], inference_args: Dict[str, Any],
    model_id: Optional[str] = None,
) -> Iterable[PredictionResult]:
    """Stacks the arrays with `numpy.stack` and calls `model(stacked, **inference_args)`.

    Args:
        model: A Keras model or a `SavedModelCallable`.
        batch: One array per example, all of one shape.
        inference_args: Keyword arguments for the model call.
        model_id: The id each result carries (handlers pass None).

    Returns:
        One PredictionResult per example; a model with several outputs gives each
        example a dict (named outputs) or a tuple (listed outputs).

    Raises:
        InvalidExampleError: if the examples differ in shape, or their shape is not the
            model's input shape.
    """
    predictions = _call(model, stack(batch), inference_args)
    return to_prediction_results(batch, _split(predictions), model_id)


def default_tensor_inference_fn(
    model: Any, batch: Sequence[tf.Tensor], inference_args: Dict[str, Any],
    model_id: Optional[str] = None,
) -> Iterable[PredictionResult]:
    """Stacks the tensors with `tf.stack` and calls `model(stacked, **inference_args)`.

    Takes and returns what `default_numpy_inference_fn` does, with tensors for arrays.

    Raises:
        InvalidExampleError: if the examples differ in shape, or their shape is not the
            model's input shape.
    """
    predictions = _call(model, stack(batch, "tensorflow"), inference_args)
    return to_prediction_results(batch, _split(predictions), model_id)


class _TFHandler(FrameworkHandler):
    """How the numpy and tensor handlers load a model and call `inference_fn`."""

    returns_results = True

    def _accept(self, arguments: Dict[str, Any]) -> str:
        model_uri, model_type = arguments["model_uri"], arguments["model_type"]
        if model_type == ModelType.SAVED_WEIGHTS and arguments["create_model_fn"] is None:
            raise ValueError(
                f"ModelType.SAVED_WEIGHTS needs create_model_fn, a function that builds the "
                f"model the weights in {model_uri!r} belong to; pass it, or save the whole "
                "model and use ModelType.SAVED_MODEL"
            )
        self._model_type = model_type
        self._create_model_fn = arguments["create_model_fn"]
        self._load_model_args = dict(arguments["load_model_args"] or {})
        self._custom_weights = arguments["custom_weights"]
        return model_uri

    def _load(self, path: str) -> Any:
        return _load(
            path, self._model_type, self._create_model_fn, self._load_model_args,
            self._custom_weights,
        )

    def _infer(self, batch: Sequence[Any], model: Any, inference_args: Dict[str, Any]) -> Any:
        return self._inference_fn(model, batch, inference_args, None)


class TFModelHandlerNumpy(_TFHandler):
    """Runs a TensorFlow model on numpy arrays, one array per example.

    Args:
        model_uri: The model (`SAVED_MODEL`) or weights (`SAVED_WEIGHTS`), on any
            filesystem TensorFlow can read.
        model_type: `ModelType.SAVED_MODEL` (default) or `ModelType.SAVED_WEIGHTS`.
        create_model_fn: Builds the Keras model that `SAVED_WEIGHTS` weights load into.
        load_model_args: Keyword arguments for `tf.keras.models.load_model`; for a
            SavedModel directory, for `tf.saved_model.load` (`tags`, `options`), which
            ignores the Keras-only `compile`, `custom_objects` and `safe_mode`.
        custom_weights: Weights loaded into a `SAVED_MODEL` Keras model after it loads.
        inference_fn: `fn(model, batch, inference_args, model_id)` returning the
            PredictionResults; by default `default_numpy_inference_fn`. The handler passes
            model_id=None: RunInference names the model on each result.
        min_batch_size, max_batch_size, max_batch_duration_secs, max_batch_weight,
            element_size_fn, batch_length_fn, batch_bucket_boundaries, large_model,
            model_copies, **kwargs: Batching (Beam 2.77's arguments, on any Beam),
            sharing and `env_vars`, as every framework handler takes them (see
            `base.HandlerOptions`).

    Raises:
        ValueError: for `SAVED_WEIGHTS` without `create_model_fn`, or bad batch sizes.
        TypeError: for a keyword argument no handler takes.
    """

    metrics_namespace = "BeamML_TF_Numpy"

    def __init__(
        self,
        model_uri: str,
        model_type: ModelType = ModelType.SAVED_MODEL,
        create_model_fn: Optional[Callable[[], Any]] = None,
        *,
        load_model_args: Optional[Dict[str, Any]] = None,
        custom_weights: str = "",
        inference_fn: TensorInferenceFn = default_numpy_inference_fn,
        min_batch_size: Optional[int] = None,
        max_batch_size: Optional[int] = None,
        max_batch_duration_secs: Optional[int] = None,
        large_model: bool = False,
        model_copies: Optional[int] = None,
        max_batch_weight: Optional[int] = None,
        element_size_fn: Optional[Callable[[Any], int]] = None,
        batch_length_fn: Optional[Callable[[Any], int]] = None,
        batch_bucket_boundaries: Optional[List[int]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(locals())


class TFModelHandlerTensor(_TFHandler):
    """Runs a TensorFlow model on tf.Tensors, one tensor per example.

    Takes the same arguments as `TFModelHandlerNumpy`; the default `inference_fn` is
    `default_tensor_inference_fn`.
    """

    metrics_namespace = "BeamML_TF_Tensor"

    def __init__(
        self,
        model_uri: str,
        model_type: ModelType = ModelType.SAVED_MODEL,
        create_model_fn: Optional[Callable[[], Any]] = None,
        *,
        load_model_args: Optional[Dict[str, Any]] = None,
        custom_weights: str = "",
        inference_fn: TensorInferenceFn = default_tensor_inference_fn,
        min_batch_size: Optional[int] = None,
        max_batch_size: Optional[int] = None,
        max_batch_duration_secs: Optional[int] = None,
        large_model: bool = False,
        model_copies: Optional[int] = None,
        max_batch_weight: Optional[int] = None,
        element_size_fn: Optional[Callable[[Any], int]] = None,
        batch_length_fn: Optional[Callable[[Any], int]] = None,
        batch_bucket_boundaries: Optional[List[int]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(locals())
