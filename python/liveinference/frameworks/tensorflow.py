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

This module is about 500 lines, over the usual 400: Beam's API puts `ModelType`, both
handlers and both default inference functions in one module, and each handler repeats
Beam's full constructor signature so that it documents itself.
"""

from __future__ import annotations

import enum
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy
import tensorflow as tf

from liveinference.contract import PredictionResult
from liveinference.errors import InvalidExampleError, ModelLoadError
from liveinference.frameworks.options import HandlerOptions, OptionsHandler
from liveinference.results import to_prediction_results

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
    try:
        found = tf.io.gfile.exists(path)
    except Exception as error:
        raise ModelLoadError(f"cannot check {what} {path!r}: {error}") from error
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
    try:
        loaded = tf.saved_model.load(path, **args)
    except Exception as error:
        raise ModelLoadError(
            f"cannot load SavedModel {path!r} ({type(error).__name__}: {error}); "
            "re-export it with model.export(path) or tf.saved_model.save(module, path)"
        ) from error
    return SavedModelCallable(loaded, path)


def _load_keras_file(path: str, load_model_args: Dict[str, Any]) -> Any:
    try:
        return tf.keras.models.load_model(path, **load_model_args)
    except Exception as error:
        raise ModelLoadError(
            f"cannot load {path!r} as a Keras model ({type(error).__name__}: {error}); "
            f"model_uri must be {_FORMATS}; write one with model.save('model.keras') "
            "or model.export(directory)"
        ) from error


def _load_weights(model: Any, path: str) -> Any:
    _require_exists(path, "weights file")
    if not callable(getattr(model, "load_weights", None)):
        raise ModelLoadError(
            f"cannot load weights {path!r} into a {type(model).__name__}, which has no "
            "load_weights(); weights need a Keras model (a .keras or .h5 model_uri, or "
            "ModelType.SAVED_WEIGHTS with create_model_fn)"
        )
    try:
        model.load_weights(path)
    except Exception as error:
        raise ModelLoadError(
            f"cannot load weights {path!r} into the {type(model).__name__} "
            f"({type(error).__name__}: {error}); save the weights with model.save_weights("
            "'model.weights.h5') from a model of the same architecture, built (given an "
            "Input) before loading"
        ) from error
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


def _shapes(batch: Sequence[Any]) -> List[tuple]:
    return sorted({tuple(numpy.shape(example)) for example in batch})


def _expected_example_shape(model: Any) -> Optional[tuple]:
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        return None
    return tuple(shape[1:]) if isinstance(shape, tuple) and shape else None


def _call(model: Any, stacked: Any, inference_args: Dict[str, Any], model_id: Optional[str]) -> Any:
    try:
        return model(stacked, **inference_args)
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as error:
        expected = _expected_example_shape(model)
        seen = tuple(stacked.shape[1:])
        if expected is None or tf.TensorShape(expected).is_compatible_with(seen):
            raise
        raise InvalidExampleError(
            f"model {model_id!r} expects examples of shape {expected}, got {seen}; "
            "reshape the examples before RunInference"
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


def _stack(
    stack: Callable[..., Any], errors: tuple, batch: Sequence[Any], model_id: Optional[str]
) -> Any:
    try:
        return stack(batch, axis=0)
    except errors as error:
        raise InvalidExampleError(
            f"examples for model {model_id!r} must all have one shape; this batch has "
            f"shapes {_shapes(batch)}"
        ) from error


def default_numpy_inference_fn(
    model: Any,
    batch: Sequence[numpy.ndarray],
    inference_args: Dict[str, Any],
    model_id: Optional[str] = None,
) -> Iterable[PredictionResult]:
    """Stacks the arrays with `numpy.stack` and calls `model(stacked, **inference_args)`.

    Args:
        model: A Keras model or a `SavedModelCallable`.
        batch: One array per example, all of one shape.
        inference_args: Keyword arguments for the model call.
        model_id: The id each result carries.

    Returns:
        One PredictionResult per example; a model with several outputs gives each
        example a dict (named outputs) or a tuple (listed outputs).

    Raises:
        InvalidExampleError: if the examples differ in shape, or their shape is not the
            model's input shape.
    """
    stacked = _stack(numpy.stack, (ValueError,), batch, model_id)
    predictions = _call(model, stacked, inference_args, model_id)
    return to_prediction_results(batch, _split(predictions), model_id)


def default_tensor_inference_fn(
    model: Any,
    batch: Sequence[tf.Tensor],
    inference_args: Dict[str, Any],
    model_id: Optional[str] = None,
) -> Iterable[PredictionResult]:
    """Stacks the tensors with `tf.stack` and calls `model(stacked, **inference_args)`.

    Takes and returns what `default_numpy_inference_fn` does, with tensors for arrays.

    Raises:
        InvalidExampleError: if the examples differ in shape, or their shape is not the
            model's input shape.
    """
    stacked = _stack(tf.stack, (tf.errors.InvalidArgumentError, ValueError), batch, model_id)
    predictions = _call(model, stacked, inference_args, model_id)
    return to_prediction_results(batch, _split(predictions), model_id)


class _TFHandler(OptionsHandler):
    """What the numpy and tensor handlers share: the model location, loading and options."""

    def __init__(
        self,
        model_uri: str,
        model_type: ModelType,
        create_model_fn: Optional[Callable[[], Any]],
        load_model_args: Optional[Dict[str, Any]],
        custom_weights: str,
        inference_fn: TensorInferenceFn,
        options: HandlerOptions,
    ) -> None:
        super().__init__()
        if model_type == ModelType.SAVED_WEIGHTS and create_model_fn is None:
            raise ValueError(
                f"ModelType.SAVED_WEIGHTS needs create_model_fn, a function that builds the "
                f"model the weights in {model_uri!r} belong to; pass it, or save the whole "
                "model and use ModelType.SAVED_MODEL"
            )
        self._model_uri = model_uri
        self._model_type = model_type
        self._create_model_fn = create_model_fn
        self._load_model_args = dict(load_model_args or {})
        self._custom_weights = custom_weights
        self._inference_fn = inference_fn
        self._configure(options)

    def load_model(self) -> Any:
        """Loads the model `model_uri` holds (see the module docstring for the formats).

        Returns:
            A Keras model, or a `SavedModelCallable` for a SavedModel directory.

        Raises:
            ModelLoadError: if the path is missing, holds none of the formats, or the
                weights do not fit the model.
        """
        return _load(
            self._model_uri, self._model_type, self._create_model_fn, self._load_model_args,
            self._custom_weights,
        )

    def run_inference(
        self,
        batch: Sequence[Any],
        model: Any,
        inference_args: Optional[Dict[str, Any]] = None,
    ) -> Iterable[PredictionResult]:
        """Runs `inference_fn` on the batch; by default stacks it and calls the model.

        Args:
            batch: The examples, all of one shape.
            model: What `load_model` returned.
            inference_args: Keyword arguments for the model call.

        Returns:
            One PredictionResult per example, each naming `model_uri` as its model_id.

        Raises:
            InvalidExampleError: from the default inference functions, if the examples
                differ in shape or do not have the model's input shape.
        """
        return self._inference_fn(model, batch, inference_args or {}, self._model_uri)

    def update_model_path(self, model_path: Optional[str] = None) -> None:
        """Points the handler at a new model; the next `load_model` reads it."""
        self._model_uri = model_path or self._model_uri

    def validate_inference_args(self, inference_args: Optional[Dict[str, Any]]) -> None:
        """Accepts any `inference_args`: they are keyword arguments of the model call."""


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
            PredictionResults; by default `default_numpy_inference_fn`.
        min_batch_size: The smallest batch `BatchElements` makes.
        max_batch_size: The largest batch `BatchElements` makes.
        max_batch_duration_secs: The longest a batch waits to fill, in streaming.
        large_model: Keep one copy of the model per machine instead of per process.
        model_copies: The number of copies to keep per machine (implies sharing).
        **kwargs: `env_vars`, a dict of environment variables set before loading.

    Raises:
        ValueError: for `SAVED_WEIGHTS` without `create_model_fn`, or bad batch sizes.
        TypeError: for a keyword argument no handler takes.
    """

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
        **kwargs: Any,
    ) -> None:
        options = HandlerOptions.of(
            min_batch_size, max_batch_size, max_batch_duration_secs, large_model, model_copies,
            kwargs,
        )
        super().__init__(
            model_uri, model_type, create_model_fn, load_model_args, custom_weights,
            inference_fn, options,
        )

    def get_num_bytes(self, batch: Sequence[numpy.ndarray]) -> int:
        """Returns the summed size of the arrays' data."""
        return sum(numpy.asarray(example).nbytes for example in batch)

    def get_metrics_namespace(self) -> str:
        """Returns `BeamML_TF_Numpy`, Beam's namespace for this handler."""
        return "BeamML_TF_Numpy"


class TFModelHandlerTensor(_TFHandler):
    """Runs a TensorFlow model on tf.Tensors, one tensor per example.

    Takes the same arguments as `TFModelHandlerNumpy`; the default `inference_fn` is
    `default_tensor_inference_fn`.
    """

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
        **kwargs: Any,
    ) -> None:
        options = HandlerOptions.of(
            min_batch_size, max_batch_size, max_batch_duration_secs, large_model, model_copies,
            kwargs,
        )
        super().__init__(
            model_uri, model_type, create_model_fn, load_model_args, custom_weights,
            inference_fn, options,
        )

    def get_num_bytes(self, batch: Sequence[tf.Tensor]) -> int:
        """Returns the summed size of the tensors' elements (string tensors count 0)."""
        return sum(example.shape.num_elements() * example.dtype.size for example in batch)

    def get_metrics_namespace(self) -> str:
        """Returns `BeamML_TF_Tensor`, Beam's namespace for this handler."""
        return "BeamML_TF_Tensor"
