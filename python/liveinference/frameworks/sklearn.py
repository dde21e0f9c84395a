"""scikit-learn handlers: numpy arrays or single-row pandas DataFrames in, predictions out."""

from __future__ import annotations

import enum
import pickle
import sys
from typing import Any, Callable, Dict, Iterable, Optional, Sequence

import numpy

from liveinference.contract import PredictionResult
from liveinference.errors import InvalidExampleError, ModelLoadError
from liveinference.frameworks.files import open_model_file
from liveinference.frameworks.options import HandlerOptions, OptionsHandler
from liveinference.results import to_prediction_results

__all__ = ["ModelFileType", "SklearnModelHandlerNumpy", "SklearnModelHandlerPandas"]

NumpyInferenceFn = Callable[[Any, Sequence[numpy.ndarray], Optional[Dict[str, Any]]], Any]
PandasInferenceFn = Callable[[Any, Sequence[Any], Optional[Dict[str, Any]]], Any]


class ModelFileType(enum.Enum):
    """How a scikit-learn model file was written: with `pickle` or with `joblib`."""

    PICKLE = 1
    JOBLIB = 2


def _load_estimator(model_uri: str, file_type: ModelFileType) -> Any:
    with open_model_file(model_uri) as file:
        try:
            if file_type == ModelFileType.JOBLIB:
                import joblib

                model = joblib.load(file)
            else:
                model = pickle.load(file)
        except Exception as error:
            other = "JOBLIB" if file_type == ModelFileType.PICKLE else "PICKLE"
            raise ModelLoadError(
                f"cannot read {model_uri!r} as a {file_type.name.lower()} file "
                f"({type(error).__name__}: {error}); if it was written another way, pass "
                f"model_file_type=ModelFileType.{other}, or check that it is a scikit-learn model"
            ) from error
    if not callable(getattr(model, "predict", None)):
        raise ModelLoadError(
            f"{model_uri!r} holds a {type(model).__name__}, which has no predict(); "
            "save a fitted scikit-learn estimator or pipeline there"
        )
    return model


def _default_numpy_inference_fn(
    model: Any, batch: Sequence[numpy.ndarray], inference_args: Optional[Dict[str, Any]] = None
) -> Any:
    try:
        stacked = numpy.stack(batch, axis=0)
    except ValueError as error:
        shapes = sorted({numpy.shape(example) for example in batch})
        raise InvalidExampleError(
            f"examples must all have one shape; this batch has shapes {shapes}"
        ) from error
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

    return model.predict(pandas.concat(batch, axis=0), **(inference_args or {}))


class _SklearnHandler(OptionsHandler):
    """What the numpy and pandas handlers share: the file, its loading and the options."""

    def __init__(
        self,
        model_uri: str,
        model_file_type: ModelFileType,
        inference_fn: Callable[..., Any],
        options: HandlerOptions,
    ) -> None:
        super().__init__()
        self._model_uri = model_uri
        self._model_file_type = model_file_type
        self._inference_fn = inference_fn
        self._configure(options)

    def load_model(self) -> Any:
        """Loads the estimator from `model_uri`.

        Raises:
            ModelLoadError: if the file is missing, unreadable, not of `model_file_type`,
                or holds something without `predict()`.
        """
        return _load_estimator(self._model_uri, self._model_file_type)

    def update_model_path(self, model_path: Optional[str] = None) -> None:
        """Points the handler at a new model file."""
        self._model_uri = model_path or self._model_uri

    def validate_inference_args(self, inference_args: Optional[Dict[str, Any]]) -> None:
        """Accepts `inference_args` only with a custom `inference_fn`, which may use them.

        Raises:
            ValueError: if `inference_args` are given to the default inference function.
        """
        if self._inference_fn in (_default_numpy_inference_fn, _default_pandas_inference_fn):
            super().validate_inference_args(inference_args)

    def get_metrics_namespace(self) -> str:
        """Returns `BeamML_Sklearn`, Beam's namespace for scikit-learn."""
        return "BeamML_Sklearn"


class SklearnModelHandlerNumpy(_SklearnHandler):
    """Runs a scikit-learn estimator on numpy arrays, one array per example.

    Args:
        model_uri: Where the model file is (any Beam filesystem path).
        model_file_type: `ModelFileType.PICKLE` (default) or `ModelFileType.JOBLIB`.
        inference_fn: `fn(model, batch, inference_args)` returning the predictions; by
            default the batch is stacked and passed to `model.predict`.
        min_batch_size: The smallest batch `BatchElements` makes.
        max_batch_size: The largest batch `BatchElements` makes.
        max_batch_duration_secs: The longest a batch waits to fill, in streaming.
        large_model: Keep one copy of the model per machine instead of per process.
        model_copies: The number of copies to keep per machine (implies sharing).
        **kwargs: `env_vars`, a dict of environment variables set before loading.
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
        **kwargs: Any,
    ) -> None:
        super().__init__(
            model_uri,
            model_file_type,
            inference_fn,
            HandlerOptions.of(
                min_batch_size, max_batch_size, max_batch_duration_secs, large_model,
                model_copies, kwargs,
            ),
        )

    def run_inference(
        self,
        batch: Sequence[numpy.ndarray],
        model: Any,
        inference_args: Optional[Dict[str, Any]] = None,
    ) -> Iterable[PredictionResult]:
        """Predicts each example of the batch.

        Raises:
            InvalidExampleError: if the examples differ in shape or do not have the
                number of features the model was fitted on.
        """
        try:
            predictions = self._inference_fn(model, batch, inference_args)
        except InvalidExampleError as error:
            raise InvalidExampleError(f"model {self._model_uri!r}: {error}") from error
        return to_prediction_results(batch, predictions, self._model_uri)

    def get_num_bytes(self, batch: Sequence[numpy.ndarray]) -> int:
        """Returns the summed in-memory size of the arrays."""
        return sum(sys.getsizeof(example) for example in batch)


class SklearnModelHandlerPandas(_SklearnHandler):
    """Runs a scikit-learn estimator on pandas DataFrames of one row each.

    Takes the same arguments as `SklearnModelHandlerNumpy`; `inference_fn` receives the
    batch as a sequence of DataFrames.
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
        **kwargs: Any,
    ) -> None:
        super().__init__(
            model_uri,
            model_file_type,
            inference_fn,
            HandlerOptions.of(
                min_batch_size, max_batch_size, max_batch_duration_secs, large_model,
                model_copies, kwargs,
            ),
        )

    def run_inference(
        self,
        batch: Sequence[Any],
        model: Any,
        inference_args: Optional[Dict[str, Any]] = None,
    ) -> Iterable[PredictionResult]:
        """Predicts each one-row DataFrame of the batch.

        Raises:
            InvalidExampleError: if a DataFrame does not have exactly one row, or lacks
                the columns the model was fitted on.
        """
        for frame in batch:
            if frame.shape[0] != 1:
                raise InvalidExampleError(
                    f"each example for model {self._model_uri!r} must be a one-row DataFrame; "
                    f"got {frame.shape[0]} rows (split it into rows before RunInference)"
                )
        expected = getattr(model, "feature_names_in_", None)
        if expected is not None and self._inference_fn is _default_pandas_inference_fn:
            for frame in batch:
                missing = [name for name in expected if name not in frame.columns]
                if missing:
                    raise InvalidExampleError(
                        f"model {self._model_uri!r} needs columns {list(expected)}; "
                        f"an example lacks {missing}"
                    )
        predictions = self._inference_fn(model, batch, inference_args)
        return to_prediction_results(batch, predictions, self._model_uri)

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        """Returns the summed deep memory usage of the DataFrames."""
        return int(sum(frame.memory_usage(deep=True).sum() for frame in batch))
