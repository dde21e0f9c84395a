"""scikit-learn handlers: numpy arrays or single-row pandas DataFrames in, predictions out.

A drop-in for Beam's `ml.inference.sklearn_inference`: the same two handlers, constructor
arguments and `ModelFileType`. A model is a fitted estimator or pipeline saved with
`pickle` or `joblib`; everything else a handler does comes from `FrameworkHandler`.
"""

from __future__ import annotations

import enum
import pickle
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy

from liveinference.errors import InvalidExampleError, ModelLoadError
from liveinference.frameworks.base import FrameworkHandler
from liveinference.frameworks.batches import check_columns, stack
from liveinference.frameworks.loading import load_step, open_model_file

__all__ = ["ModelFileType", "SklearnModelHandlerNumpy", "SklearnModelHandlerPandas"]

NumpyInferenceFn = Callable[[Any, Sequence[numpy.ndarray], Optional[Dict[str, Any]]], Any]
PandasInferenceFn = Callable[[Any, Sequence[Any], Optional[Dict[str, Any]]], Any]


class ModelFileType(enum.Enum):
    """How a scikit-learn model file was written: with `pickle` or with `joblib`."""

    PICKLE = 1
    JOBLIB = 2


def _load_estimator(model_uri: str, file_type: ModelFileType) -> Any:
    other = "JOBLIB" if file_type == ModelFileType.PICKLE else "PICKLE"
    with open_model_file(model_uri) as file, load_step(
        f"cannot read {model_uri!r} as a {file_type.name.lower()} file",
        f"if it was written another way, pass model_file_type=ModelFileType.{other}, or "
        "check that it is a scikit-learn model",
    ):
        if file_type == ModelFileType.JOBLIB:
            import joblib

            model = joblib.load(file)
        else:
            model = pickle.load(file)
    if not callable(getattr(model, "predict", None)):
        raise ModelLoadError(
            f"{model_uri!r} holds a {type(model).__name__}, which has no predict(); "
            "save a fitted scikit-learn estimator or pipeline there"
        )
    return model


def _default_numpy_inference_fn(
    model: Any, batch: Sequence[numpy.ndarray], inference_args: Optional[Dict[str, Any]] = None
) -> Any:
    stacked = stack(batch)
    expected = getattr(model, "n_features_in_", None)
    if expected is not None and (stacked.ndim != 2 or stacked.shape[1] != expected):
        raise InvalidExampleError(
            f"the model expects examples of shape ({expected},), got {stacked.shape[1:]}"
        )
    return model.predict(stacked, **(inference_args or {}))


def _default_pandas_inference_fn(
    model: Any, batch: Sequence[Any], inference_args: Optional[Dict[str, Any]] = None
) -> Any:
    import pandas

    expected = getattr(model, "feature_names_in_", None)
    if expected is not None:
        check_columns(batch, expected)
    return model.predict(pandas.concat(batch, axis=0), **(inference_args or {}))


class _SklearnHandler(FrameworkHandler):
    """How the numpy and pandas handlers load an estimator and call `inference_fn`."""

    metrics_namespace = "BeamML_Sklearn"
    fns_without_args = (_default_numpy_inference_fn, _default_pandas_inference_fn)

    def _accept(self, arguments: Dict[str, Any]) -> str:
        self._model_file_type = arguments["model_file_type"]
        return arguments["model_uri"]

    def _load(self, path: str) -> Any:
        return _load_estimator(path, self._model_file_type)

    def _infer(self, batch: Sequence[Any], model: Any, inference_args: Dict[str, Any]) -> Any:
        return self._inference_fn(model, batch, inference_args)


class SklearnModelHandlerNumpy(_SklearnHandler):
    """Runs a scikit-learn estimator on numpy arrays, one array per example.

    Args:
        model_uri: Where the model file is (any Beam filesystem path).
        model_file_type: `ModelFileType.PICKLE` (default) or `ModelFileType.JOBLIB`.
        inference_fn: `fn(model, batch, inference_args)` returning the predictions; by
            default the batch is stacked and passed to `model.predict`.
        min_batch_size, max_batch_size, max_batch_duration_secs, max_batch_weight,
            element_size_fn, batch_length_fn, batch_bucket_boundaries, large_model,
            model_copies, **kwargs: Batching (Beam 2.77's arguments, on any Beam),
            sharing and `env_vars`, as every framework handler takes them (see
            `base.HandlerOptions`).
    """

    def __init__(
        self,
        model_uri: str,
        model_file_type: ModelFileType = ModelFileType.PICKLE,
        *,
        inference_fn: NumpyInferenceFn = _default_numpy_inference_fn,
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


class SklearnModelHandlerPandas(_SklearnHandler):
    """Runs a scikit-learn estimator on pandas DataFrames of one row each.

    Takes the same arguments as `SklearnModelHandlerNumpy`; `inference_fn` receives the
    batch as a sequence of DataFrames. The default one checks that each has the columns
    the model was fitted on.

    Raises:
        InvalidExampleError: from `run_inference`, if a DataFrame does not have exactly one
            row, or lacks the columns the model was fitted on.
    """

    def __init__(
        self,
        model_uri: str,
        model_file_type: ModelFileType = ModelFileType.PICKLE,
        *,
        inference_fn: PandasInferenceFn = _default_pandas_inference_fn,
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

    def _infer(self, batch: Sequence[Any], model: Any, inference_args: Dict[str, Any]) -> Any:
        for frame in batch:
            if frame.shape[0] != 1:
                raise InvalidExampleError(
                    f"each example must be a one-row DataFrame; got {frame.shape[0]} rows "
                    "(split it into rows before RunInference)"
                )
        return super()._infer(batch, model, inference_args)
