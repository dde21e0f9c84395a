"""How each handler runs on a whole batch element: one framework call per batch, its output
converted once into one inference per row.

`TableRunner.for_handler(handler)` picks the way when the pipeline is built, and refuses a
handler that cannot score tables, saying why:

- scikit-learn (NumPy and pandas) and ONNX: the handler's inference function gets the whole
  feature matrix (or DataFrame) as its batch.
- PyTorch tensors: the matrix becomes one tensor; with the default inference function the
  model is called on it directly and its output converted to NumPy once.
- XGBoost (NumPy, pandas, SciPy): an XGBoost example already is a table; the batch is one.
- TensorFlow, model servers, and any other handler of 1-D examples: the rows of the matrix
  are the examples (`run_inference` on the matrix, a sequence of rows).
- Hugging Face and keyed handlers: refused (their examples are text, token ids or keyed).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, cast

import numpy

from liveinference.batched.tables import Table
from liveinference.contract import ModelHandler, is_prediction
from liveinference.frameworks.base import FrameworkHandler

__all__ = ["TableRunner"]

# The handler classes (by qualified name, so nothing is imported to check) and how each
# takes a batch; a subclass takes it as its closest listed base does.
_WAYS = {
    "liveinference.frameworks.sklearn.SklearnModelHandlerNumpy": "matrix",
    "liveinference.frameworks.onnx.OnnxModelHandlerNumpy": "matrix",
    "liveinference.frameworks.sklearn.SklearnModelHandlerPandas": "frame",
    "liveinference.frameworks.pytorch.PytorchModelHandlerTensor": "torch",
    "liveinference.frameworks.xgboost.XGBoostModelHandlerNumpy": "one_table",
    "liveinference.frameworks.xgboost.XGBoostModelHandlerPandas": "one_frame",
    "liveinference.frameworks.xgboost.XGBoostModelHandlerSciPy": "one_sparse",
    "liveinference.frameworks.tensorflow.TFModelHandlerTensor": "tf_rows",
}
_REFUSED = {
    "liveinference.frameworks.pytorch.PytorchModelHandlerKeyedTensor":
        "its examples are dicts of named tensors, not rows of a table",
    "liveinference.frameworks.huggingface.HuggingFaceModelHandlerTensor":
        "its examples are token-id tensors, not rows of a feature table",
    "liveinference.frameworks.huggingface.HuggingFaceModelHandlerKeyedTensor":
        "its examples are a tokenizer's dicts of tensors, not rows of a feature table",
    "liveinference.frameworks.huggingface.HuggingFacePipelineModelHandler":
        "a pipeline takes text, images or audio, not rows of a feature table",
}


def _way(handler: ModelHandler) -> str:
    """How the handler takes a batch: a `_WAYS` value, or "rows" for any other handler.

    Raises:
        TypeError: for a handler listed in `_REFUSED`, or one whose examples are keyed.
    """
    for kind in type(handler).__mro__:
        name = f"{kind.__module__}.{kind.__qualname__}"
        if name in _REFUSED:
            raise TypeError(
                f"{type(handler).__name__} cannot score batch elements: {_REFUSED[name]}; "
                "use RunInference without on_batches()"
            )
        if name in _WAYS:
            return _WAYS[name]
        if "Keyed" in kind.__name__ or kind.__name__ == "OneModelForAllKeys":
            raise TypeError(
                f"{type(handler).__name__} pairs each example with a key, and a batch element "
                "is scored by one model without keys; key whole batches with one "
                "RunInference(...).on_batches() per model, or score keyed rows per row"
            )
    return "rows"


def _inference_fn(handler: ModelHandler) -> Callable[..., Any]:
    """The inference function of a framework handler (`_way` named it one)."""
    return cast(FrameworkHandler, handler).inference_fn


def _inferences(results: Sequence[Any]) -> List[Any]:
    """The inference of each result (a result that is not a PredictionResult is its own)."""
    return [result.inference if is_prediction(result) else result for result in results]


def _checked(predictions: Any, length: int, handler: ModelHandler) -> Any:
    """Returns `predictions` if there is one per row.

    Raises:
        ValueError: naming both counts otherwise, since rows would be lost or misaligned.
    """
    count = len(predictions)
    if count != length:
        raise ValueError(
            f"model {handler.get_model_id()!r} returned {count} predictions for {length} rows; "
            "a batch inference must return one prediction per row"
        )
    return predictions


def _torch_tensor(matrix: numpy.ndarray, model: Any) -> Any:
    """The matrix as a tensor, in the dtype and on the device of the model's parameters."""
    import torch

    from liveinference.frameworks.batches import device_of

    tensor = torch.from_numpy(numpy.ascontiguousarray(matrix))
    first = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    if first is not None and first.is_floating_point() and tensor.is_floating_point():
        tensor = tensor.to(first.dtype)
    return tensor.to(device_of(model, torch.device("cpu")))


class TableRunner:
    """Runs one handler on the rows of batch elements.

    Args:
        way: How the handler takes a batch (see the module docstring).
        feature_columns: The columns that are the model's features; None for all.
    """

    def __init__(self, way: str, feature_columns: Optional[Sequence[str]]) -> None:
        self.way = way
        self.feature_columns = None if feature_columns is None else list(feature_columns)

    @classmethod
    def for_handler(
        cls, handler: ModelHandler, feature_columns: Optional[Sequence[str]] = None
    ) -> "TableRunner":
        """Picks how `handler` scores a batch element.

        Raises:
            TypeError: if the handler cannot score batch elements, saying why.
        """
        return cls(_way(handler), feature_columns)

    def run(
        self,
        handler: ModelHandler,
        model: Any,
        table: Table,
        positions: Sequence[int],
        inference_args: Optional[Dict[str, Any]],
    ) -> Any:
        """Runs the model on the rows at `positions` of a batch element.

        Args:
            handler: The handler of the serving model.
            model: The serving model.
            table: The batch element.
            positions: The rows to score (a range, or the rows left after others failed).
            inference_args: Extra arguments for the framework call.

        Returns:
            One inference per row, in order: a NumPy array where the framework returns one,
            else a list.

        Raises:
            Whatever the handler raises for these rows; ValueError if it returns a number
            of predictions other than the number of rows.
        """
        args = inference_args or {}
        rows = Table(table.rows(positions), table.kind, table.columns)
        if self.way == "frame":
            frame = rows.frame(self.feature_columns)
            output = _inference_fn(handler)(model, [frame], args)
        elif self.way.startswith("one_"):
            data = rows.frame(self.feature_columns) if self.way == "one_frame" else rows.matrix(
                self.feature_columns)
            if self.way == "one_sparse":
                from scipy import sparse

                data = sparse.csr_matrix(data)
            output = list(handler.run_inference([data], model, args))[0].inference
        else:
            output = self._run_rows(handler, model, rows.matrix(self.feature_columns), args)
        return _checked(output, len(positions), handler)

    def _run_rows(
        self, handler: ModelHandler, model: Any, matrix: numpy.ndarray, args: Dict[str, Any]
    ) -> Any:
        if self.way == "matrix":
            return _inference_fn(handler)(model, matrix, args)
        if self.way == "torch":
            from liveinference.frameworks import pytorch

            tensor = _torch_tensor(matrix, model)
            function = _inference_fn(handler)
            if function is not pytorch.default_tensor_inference_fn:
                return _inferences(function(tensor, model, tensor.device, args, None))
            import torch

            with torch.no_grad():
                return model(tensor, **args).cpu().numpy()
        if self.way == "tf_rows":
            import tensorflow

            return _inferences(list(handler.run_inference(
                tensorflow.convert_to_tensor(matrix), model, args)))
        # A 2-D array is a sequence of its rows: the examples of a 1-D-example handler.
        return _inferences(list(handler.run_inference(cast(Sequence[Any], matrix), model, args)))
