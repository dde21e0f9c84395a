"""XGBoost handlers: 2-D arrays, DataFrames, sparse matrices or datatable Frames in.

A drop-in for Beam's `ml.inference.xgboost_inference`: the same four handlers and
constructor arguments. As in Beam, an example is a whole table (rows x features) and its
inference is the array of its rows' predictions. A model is `model_class()` with the state
file `model_state` (JSON or UBJ, written by `model.save_model`) loaded into it.

Unlike Beam, which calls `predict` once per example, the default inference function stacks
the examples of a batch, predicts them in one call and splits the predictions back.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
import scipy.sparse
import xgboost

from liveinference.contract import PredictionResult
from liveinference.errors import InvalidExampleError, ModelLoadError
from liveinference.frameworks.base import FrameworkHandler
from liveinference.frameworks.batches import check_columns, first_line
from liveinference.frameworks.loading import load_step, open_model_file

__all__ = [
    "XGBoostInferenceFn",
    "XGBoostModelHandler",
    "XGBoostModelHandlerDatatable",
    "XGBoostModelHandlerNumpy",
    "XGBoostModelHandlerPandas",
    "XGBoostModelHandlerSciPy",
    "default_xgboost_inference_fn",
]

XGBoostModel = Union[xgboost.Booster, xgboost.XGBModel]
XGBoostInferenceFn = Callable[
    [Sequence[Any], XGBoostModel, Optional[Dict[str, Any]]], Iterable[PredictionResult]
]

_KINDS = "2-D numpy arrays, pandas DataFrames, scipy sparse matrices or datatable Frames"


def _kind(example: Any) -> str:
    """Returns which table library `example` comes from: numpy, pandas, scipy or datatable."""
    if scipy.sparse.issparse(example):
        return "scipy"
    root = type(example).__module__.split(".")[0]
    if root in ("numpy", "pandas", "datatable") and len(getattr(example, "shape", ())) == 2:
        return root
    shape = getattr(example, "shape", None)
    raise InvalidExampleError(
        f"examples must be {_KINDS} (rows x features); got a {type(example).__name__}"
        + (f" of shape {tuple(shape)}; reshape one row with row.reshape(1, -1)" if shape else "")
    )


def _batch_kind(batch: Sequence[Any]) -> str:
    """Returns the one kind of table all examples of the batch are."""
    kinds = sorted({_kind(example) for example in batch})
    if len(kinds) > 1:
        raise InvalidExampleError(f"a batch mixes examples of kinds {kinds}; give one kind")
    return kinds[0]


def _concatenate(batch: Sequence[Any], kind: str) -> Any:
    """Puts the tables of a batch into one, row after row."""
    if len(batch) == 1 and kind != "datatable":
        return batch[0]
    if kind == "numpy":
        return numpy.concatenate(batch, axis=0)
    if kind == "pandas":
        import pandas

        return pandas.concat(batch, axis=0, ignore_index=True)
    if kind == "scipy":
        return scipy.sparse.vstack(batch, format="csr")
    import datatable

    # XGBoost no longer reads datatable Frames natively; numpy keeps it off a slow path.
    table = datatable.rbind(*batch).to_numpy()
    return numpy.ma.filled(table.astype(numpy.float64), numpy.nan)


def _check_features(batch: Sequence[Any], kind: str, model: XGBoostModel) -> None:
    booster = model if isinstance(model, xgboost.Booster) else model.get_booster()
    expected = booster.num_features()
    for example in batch:
        if example.shape[1] != expected:
            raise InvalidExampleError(
                f"the model expects examples with {expected} features (columns), got an "
                f"example of shape {tuple(example.shape)}"
            )
    names = booster.feature_names
    if names and kind == "pandas":
        check_columns(batch, names)


def default_xgboost_inference_fn(
    batch: Sequence[Any],
    model: XGBoostModel,
    inference_args: Optional[Dict[str, Any]] = None,
) -> List[PredictionResult]:
    """Predicts the rows of every example in one call; splits the predictions per example.

    Args:
        batch: Tables of one kind (2-D numpy arrays, pandas DataFrames, scipy sparse
            matrices or datatable Frames), each with the model's features as columns.
        model: An `xgboost.Booster` (given a DMatrix) or an XGBoost scikit-learn model.
        inference_args: Extra keyword arguments for `predict`.

    Returns:
        One PredictionResult per example, whose inference holds its rows' predictions.

    Raises:
        InvalidExampleError: if an example is not such a table, the batch mixes kinds, or
            an example lacks the model's features.
    """
    kind = _batch_kind(batch)
    _check_features(batch, kind, model)
    stacked = _concatenate(batch, kind)
    if isinstance(model, xgboost.Booster):
        stacked = xgboost.DMatrix(stacked)
    predictions = model.predict(stacked, **(inference_args or {}))
    ends = numpy.cumsum([example.shape[0] for example in batch])
    return [
        PredictionResult(example, predictions[end - example.shape[0]:end])
        for example, end in zip(batch, ends)
    ]


def _version_in(data: bytes) -> Optional[Tuple[int, ...]]:
    """Returns the XGBoost version a JSON model file names, if it names one.

    UBJ files are not read: UBJ came with XGBoost 1.6, and files from older versions,
    the ones this XGBoost may not read, are JSON or binary.
    """
    if data.lstrip()[:2] != b'{"':
        return None
    try:
        version = json.loads(data).get("version")
        return tuple(int(part) for part in version) if version else None
    except (ValueError, TypeError, AttributeError):
        return None


def _format_hint(data: bytes) -> str:
    start = data.lstrip()[:2]
    if start[:1] == b"{":
        return ""
    if start[:1] == b"\x80":
        return "; the file is a Python pickle, not a model saved with save_model"
    return (
        "; it is neither JSON nor UBJ: another framework's file, or the binary format of "
        "XGBoost before 1.0, which this XGBoost no longer reads"
    )


def _load_xgboost_model(model_class: Callable[..., XGBoostModel], model_state: str) -> Any:
    name = getattr(model_class, "__name__", repr(model_class))
    with open_model_file(model_state) as file:
        data = file.read()
    with load_step(
        f"cannot build model_class {name}() to load {model_state!r} into",
        "model_class must build an XGBoost model with no arguments",
    ):
        model = model_class()
    if not callable(getattr(model, "load_model", None)):
        raise ModelLoadError(
            f"model_class {name} made a {type(model).__name__}, which has no load_model(); "
            f"pass xgboost.Booster or an XGBoost scikit-learn class such as XGBClassifier"
        )
    try:
        model.load_model(bytearray(data))
    except Exception as error:
        cause = first_line(error)
        written_by = _version_in(data)
        ours = tuple(int(part) for part in re.findall(r"\d+", xgboost.__version__)[:3])
        if written_by and written_by != ours:
            version = ".".join(map(str, written_by))
            raise ModelLoadError(
                f"cannot load {model_state!r} into {name}: it was written by XGBoost "
                f"{version} and XGBoost {xgboost.__version__} cannot read it ({cause}); load "
                f"it with XGBoost {version} and save it again with model.save_model("
                "'model.json'), or serve it with that XGBoost version"
            ) from error
        raise ModelLoadError(
            f"cannot load {model_state!r} into {name} ({cause}){_format_hint(data)}; "
            "model_state must be a JSON or UBJ file written by model.save_model() from a "
            f"model of the class given as model_class"
        ) from error
    return model


class XGBoostModelHandler(FrameworkHandler):
    """Loads `model_state` into `model_class()` and predicts tables of rows.

    The base of the four XGBoost handlers, which differ only in the kind of table they
    take and how they size it; use one of them.

    Args:
        model_class: The class (or a function returning an instance) of the saved model:
            `xgboost.Booster`, or an XGBoost scikit-learn class such as `XGBClassifier`.
        model_state: Where the state file is (any Beam filesystem path): JSON or UBJ
            written by `model.save_model`.
        inference_fn: `fn(batch, model, inference_args)` returning PredictionResults; by
            default every example is predicted in one `predict` call.
        min_batch_size, max_batch_size, max_batch_duration_secs, max_batch_weight,
            element_size_fn, batch_length_fn, batch_bucket_boundaries, **kwargs: Batching
            (Beam 2.77's arguments, on any Beam) and `env_vars`, as every framework
            handler takes them (see `base.HandlerOptions`).

    Raises:
        ValueError: if `model_class` or `model_state` is missing, or `model_class` is a
            class that is not an XGBoost model.
        TypeError: for an unknown keyword argument.
    """

    metrics_namespace = "BeamML_XGBoost"
    returns_results = True

    def __init__(
        self,
        model_class: Callable[..., XGBoostModel],
        model_state: str,
        inference_fn: XGBoostInferenceFn = default_xgboost_inference_fn,
        *,
        min_batch_size: Optional[int] = None,
        max_batch_size: Optional[int] = None,
        max_batch_duration_secs: Optional[int] = None,
        max_batch_weight: Optional[int] = None,
        element_size_fn: Optional[Callable[[Any], int]] = None,
        batch_length_fn: Optional[Callable[[Any], int]] = None,
        batch_bucket_boundaries: Optional[List[int]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(locals())

    def _accept(self, arguments: Dict[str, Any]) -> str:
        handler, model_class = type(self).__name__, arguments["model_class"]
        model_state = arguments["model_state"]
        if model_class is None:
            raise ValueError(
                f"{handler} needs model_class, the XGBoost class whose state {model_state!r} "
                "holds: xgboost.Booster, or e.g. xgboost.XGBClassifier or XGBRegressor"
            )
        if isinstance(model_class, type) and not issubclass(
            model_class, (xgboost.Booster, xgboost.XGBModel)
        ):
            raise ValueError(
                f"{handler} got model_class {model_class.__name__}, which is not an XGBoost "
                "model; pass xgboost.Booster or a subclass of xgboost.XGBModel"
            )
        if not model_state:
            raise ValueError(
                f"{handler} needs model_state, the path of a JSON or UBJ file written by "
                "model.save_model()"
            )
        self._model_class = model_class
        return model_state

    def _load(self, path: str) -> XGBoostModel:
        return _load_xgboost_model(self._model_class, path)

    def _infer(self, batch: Sequence[Any], model: Any, inference_args: Dict[str, Any]) -> Any:
        return self._inference_fn(batch, model, inference_args)


class XGBoostModelHandlerNumpy(XGBoostModelHandler):
    """Runs an XGBoost model on 2-D numpy arrays, each holding one or more rows.

    Takes the arguments of `XGBoostModelHandler`.
    """


class XGBoostModelHandlerPandas(XGBoostModelHandler):
    """Runs an XGBoost model on pandas DataFrames, each holding one or more rows.

    Takes the arguments of `XGBoostModelHandler`. A model trained on a DataFrame knows its
    column names; examples must have those columns.
    """


class XGBoostModelHandlerSciPy(XGBoostModelHandler):
    """Runs an XGBoost model on scipy sparse matrices, each holding one or more rows.

    Takes the arguments of `XGBoostModelHandler`.
    """


class XGBoostModelHandlerDatatable(XGBoostModelHandler):
    """Runs an XGBoost model on datatable Frames, each holding one or more rows.

    Takes the arguments of `XGBoostModelHandler`; needs the `datatable` package.
    """
