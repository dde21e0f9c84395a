"""ONNX handler: numpy arrays in, the first output of an onnxruntime session out.

A drop-in for Beam's `ml.inference.onnx_inference`: the same handler, constructor
arguments and default inference function. A model is any `.onnx` file, e.g. one written
by `torch.onnx.export`, `skl2onnx.to_onnx(...).SerializeToString()` or `onnx.save_model`.
Only onnxruntime is needed to serve it; the `onnx` package is not.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from liveinference.errors import InvalidExampleError, ModelLoadError
from liveinference.frameworks.base import FrameworkHandler
from liveinference.frameworks.batches import stack
from liveinference.frameworks.loading import load_step, open_model_file

__all__ = ["NumpyInferenceFn", "OnnxModelHandlerNumpy", "default_numpy_inference_fn"]

NumpyInferenceFn = Callable[
    [ort.InferenceSession, Sequence[numpy.ndarray], Optional[Dict[str, Any]]], Any
]

# onnxruntime's names for tensor element types, and the numpy dtypes that match them.
_NUMPY_DTYPES = {
    "tensor(float)": numpy.dtype(numpy.float32),
    "tensor(double)": numpy.dtype(numpy.float64),
    "tensor(float16)": numpy.dtype(numpy.float16),
    "tensor(int64)": numpy.dtype(numpy.int64),
    "tensor(int32)": numpy.dtype(numpy.int32),
    "tensor(int16)": numpy.dtype(numpy.int16),
    "tensor(int8)": numpy.dtype(numpy.int8),
    "tensor(uint8)": numpy.dtype(numpy.uint8),
    "tensor(bool)": numpy.dtype(numpy.bool_),
}
_PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
# What the first bytes of a file that is not ONNX say it is, for the load error.
_OTHER_FORMATS = (
    (b"\x80", "a Python pickle (a scikit-learn model?)"),
    (b"PK", "a zip archive (a PyTorch state dict or a Keras .keras file?)"),
    (b"\x89HDF", "an HDF5 file (a Keras .h5 file?)"),
    (b"{", "a JSON or UBJ file (an XGBoost model?)"),
)


def _default_providers() -> List[str]:
    """Returns CUDA then CPU, keeping those this onnxruntime build has."""
    available = ort.get_available_providers()
    return [name for name in _PREFERRED_PROVIDERS if name in available]


def _describe(node: Any) -> str:
    """Describes a session input, e.g. "input 'X' of type tensor(float) and shape [None, 4]"."""
    return f"input {node.name!r} of type {node.type} and shape {node.shape}"


def _check_fits(node: Any, stacked: numpy.ndarray) -> None:
    """Raises InvalidExampleError unless the stacked batch fits the session input `node`."""
    expected = list(node.shape)
    fixed = [isinstance(size, int) for size in expected]
    fits = len(expected) == stacked.ndim and all(
        not is_fixed or size == got for is_fixed, size, got in zip(fixed, expected, stacked.shape)
    )
    if not fits:
        if len(expected) == stacked.ndim and fixed[0] and expected[0] != stacked.shape[0]:
            raise InvalidExampleError(
                f"the model's {_describe(node)} takes batches of exactly {expected[0]}, got "
                f"{stacked.shape[0]}; export it with a dynamic batch axis, or set "
                f"min_batch_size=max_batch_size={expected[0]}"
            )
        raise InvalidExampleError(
            f"the model's {_describe(node)} expects examples of shape "
            f"{tuple(expected[1:])}, got {stacked.shape[1:]}"
        )
    dtype = _NUMPY_DTYPES.get(node.type)
    if dtype is not None and stacked.dtype != dtype:
        raise InvalidExampleError(
            f"the model's {_describe(node)} expects {dtype} examples, got {stacked.dtype}; "
            f"convert them first, e.g. with example.astype(numpy.{dtype})"
        )


def default_numpy_inference_fn(
    inference_session: ort.InferenceSession,
    batch: Sequence[numpy.ndarray],
    inference_args: Optional[Dict[str, Any]] = None,
) -> Any:
    """Stacks the batch into the session's first input and returns its first output.

    Args:
        inference_session: The onnxruntime session.
        batch: Arrays of one shape and dtype, one per example.
        inference_args: The model's other inputs, by name; they are not batched.

    Returns:
        The first output of the model: one row per example.

    Raises:
        InvalidExampleError: if the examples differ in shape, or their shape or dtype does
            not fit the model's first input.
    """
    node = inference_session.get_inputs()[0]
    stacked = stack(batch)
    _check_fits(node, stacked)
    feeds = {node.name: stacked, **(inference_args or {})}
    try:
        return inference_session.run(None, feeds)[0]
    except (ort_errors.InvalidArgument, ort_errors.Fail) as error:
        raise InvalidExampleError(
            f"the model cannot take examples of shape {stacked.shape[1:]} and dtype "
            f"{stacked.dtype} (it expects {_describe(node)}): {error}"
        ) from error


def _read_model(model_uri: str) -> Any:
    """Returns what `InferenceSession` takes: the local path (so external data next to the
    model is found), or the bytes of a file on another filesystem."""
    if os.path.isfile(model_uri):
        return model_uri
    with open_model_file(model_uri) as file:
        return file.read()


def _not_onnx_hint(model_uri: str) -> str:
    """Says what the file looks like when its first bytes are another known format's."""
    try:
        with open_model_file(model_uri) as file:
            head = file.read(4)
    except ModelLoadError:
        return ""
    for magic, what in _OTHER_FORMATS:
        if head.startswith(magic):
            return f"the file looks like {what}, which must be converted to ONNX first; "
    return ""


class OnnxModelHandlerNumpy(FrameworkHandler):
    """Runs an ONNX model with onnxruntime on numpy arrays, one array per example.

    Args:
        model_uri: Where the `.onnx` file is (any Beam filesystem path).
        session_options: An `onnxruntime.SessionOptions` for the session.
        providers: The onnxruntime execution providers, in order of preference; None
            takes CUDA where this onnxruntime has it, then CPU (Beam's default list).
        provider_options: Options for each provider, as `InferenceSession` takes them.
        inference_fn: `fn(session, batch, inference_args)` returning one prediction per
            example; by default the batch is stacked into the model's first input and
            the first output is returned.
        min_batch_size, max_batch_size, max_batch_duration_secs, max_batch_weight,
            element_size_fn, batch_length_fn, batch_bucket_boundaries, large_model,
            model_copies, **kwargs: Batching (Beam 2.77's arguments, on any Beam),
            sharing and `env_vars`, as every framework handler takes them (see
            `base.HandlerOptions`).

    Raises:
        TypeError: for an unknown keyword argument.
        ValueError: for batch sizes that are not positive or `model_copies` below 1.
    """

    metrics_namespace = "BeamML_Onnx"

    def __init__(
        self,
        model_uri: str,
        session_options: Optional[ort.SessionOptions] = None,
        providers: Optional[Sequence[Any]] = None,
        provider_options: Optional[Sequence[Dict[str, Any]]] = None,
        *,
        inference_fn: NumpyInferenceFn = default_numpy_inference_fn,
        large_model: bool = False,
        model_copies: Optional[int] = None,
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
        providers = arguments["providers"]
        self._session_options = arguments["session_options"]
        self._providers = list(providers) if providers is not None else None
        self._provider_options = arguments["provider_options"]
        return arguments["model_uri"]

    def _load(self, path: str) -> ort.InferenceSession:
        model = _read_model(path)
        providers = self._providers if self._providers is not None else _default_providers()
        with load_step(
            f"cannot load {path!r} as an ONNX model",
            lambda: f"{_not_onnx_hint(path)}write one with torch.onnx.export, skl2onnx or "
            "onnx.save_model",
        ):
            return ort.InferenceSession(
                model,
                sess_options=self._session_options,
                providers=providers,
                provider_options=self._provider_options,
            )

    def _infer(self, batch: Sequence[Any], model: Any, inference_args: Dict[str, Any]) -> Any:
        return self._inference_fn(model, batch, inference_args)
