"""PyTorch handlers: tensors, or dicts of named tensors, in; the model's outputs out.

A drop-in for Beam's `ml.inference.pytorch_inference`: the same two handlers, the same
constructor arguments and the same inference functions. A model comes either from a state
dict plus the `torch.nn.Module` class it belongs to, or from a TorchScript file.

This module holds how to load and call a PyTorch model; stacking, device placement and
everything else a handler does come from `base.FrameworkHandler` and `batches`.

Before the first model load in a process, the objects alive then (torch's and Beam's
modules, the worker's own state) leave the garbage collector's generations, once
(`freeze_long_lived_objects`): torch tensors are objects the collector tracks, so a
per-row pipeline's results trigger collections, and each full collection would otherwise
walk every object torch's import made.
"""

from __future__ import annotations

import atexit
import functools
import gc
import logging
import threading
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import torch

from liveinference.contract import PredictionResult
from liveinference.errors import ModelLoadError
from liveinference.frameworks.base import FrameworkHandler, HandlerArgumentError
from liveinference.frameworks.batches import call_model, check_device, device_of, place, stack
from liveinference.frameworks.batches import stack_by_key, to_device, to_prediction_results
from liveinference.frameworks.loading import load_step, open_model_file

__all__ = [
    "KeyedTensorInferenceFn",
    "PytorchModelHandlerKeyedTensor",
    "PytorchModelHandlerTensor",
    "TensorInferenceFn",
    "default_keyed_tensor_inference_fn",
    "default_tensor_inference_fn",
    "freeze_long_lived_objects",
    "make_keyed_tensor_model_fn",
    "make_tensor_model_fn",
]

_CPU = torch.device("cpu")
_LOG = logging.getLogger(__name__)
_FREEZE_LOCK = threading.Lock()
_frozen = False

_Device = Union[str, torch.device]
_Args = Optional[Dict[str, Any]]
TensorInferenceFn = Callable[
    [Sequence[torch.Tensor], torch.nn.Module, _Device, _Args, Optional[str]],
    Iterable[PredictionResult],
]
KeyedTensorInferenceFn = Callable[
    [Sequence[Dict[str, torch.Tensor]], torch.nn.Module, _Device, _Args, Optional[str]],
    Iterable[PredictionResult],
]


def freeze_long_lived_objects() -> bool:
    """Moves every object alive now out of the garbage collector's generations, once a process.

    Collects first, so no garbage is kept, then calls `gc.freeze()`: the objects alive now
    (imported modules, the worker's state) are left out of later collections. They are
    still freed as usual when their last reference goes; only reference cycles among them
    stay until exit, when they go back to the collector (as a long-lived worker's modules
    would stay anyway). `gc.unfreeze()` undoes it earlier. The PyTorch handlers call this
    before their first model load, so the model itself stays in the collector's
    generations and a refreshed-away model is freed.

    Returns:
        True if this call froze them, False if an earlier call in this process had.
    """
    global _frozen
    with _FREEZE_LOCK:
        if _frozen:
            return False
        _frozen = True
        gc.collect()
        gc.freeze()
        # At exit the objects go back to the collector, so the interpreter's last
        # collections free them (extension modules check for leaks then).
        atexit.register(gc.unfreeze)
    _LOG.info(
        "moved %d long-lived objects out of the garbage collector's generations "
        "(gc.freeze(), once per process, at the first PyTorch model load)",
        gc.get_freeze_count(),
    )
    return True


def _check_model_source(
    state_dict_path: Optional[str],
    model_class: Optional[Callable[..., torch.nn.Module]],
    torch_script_model_path: Optional[str],
) -> str:
    """Returns the model path, once sure exactly one way of loading the model was given.

    Raises:
        HandlerArgumentError: a ValueError, and a RuntimeError as Beam raises for the same
            arguments (Beam too refuses a state dict and a TorchScript path together).
    """
    if state_dict_path and torch_script_model_path:
        raise HandlerArgumentError(
            f"both state_dict_path {state_dict_path!r} and torch_script_model_path "
            f"{torch_script_model_path!r} were given; give one: state_dict_path with "
            "model_class, or torch_script_model_path"
        )
    if torch_script_model_path and model_class is not None:
        raise HandlerArgumentError(
            f"model_class {model_class.__name__} was given with torch_script_model_path "
            f"{torch_script_model_path!r}; a TorchScript model carries its own code, so drop "
            "model_class, or give state_dict_path instead of torch_script_model_path"
        )
    if state_dict_path and model_class is None:
        raise HandlerArgumentError(
            f"state_dict_path {state_dict_path!r} needs model_class, the torch.nn.Module "
            "class whose parameters it holds (and model_params, its constructor arguments)"
        )
    path = state_dict_path or torch_script_model_path
    if not path:
        raise HandlerArgumentError(
            "no model was given: pass state_dict_path with model_class for a saved state "
            "dict, or torch_script_model_path for a TorchScript file"
        )
    return path


def _read_state_dict(path: str, load_model_args: Mapping[str, Any]) -> Mapping[str, Any]:
    with open_model_file(path) as file, load_step(
        f"cannot read {path!r} as a PyTorch state dict",
        "save one with torch.save(model.state_dict(), path), or if it is a TorchScript "
        "file, pass it as torch_script_model_path",
    ):
        state = torch.load(file, **{"map_location": _CPU, **load_model_args})
    if isinstance(state, torch.jit.ScriptModule):
        raise ModelLoadError(
            f"{path!r} is a TorchScript model, not a state dict; pass it as "
            "torch_script_model_path (without model_class) instead of state_dict_path"
        )
    if not isinstance(state, Mapping):
        raise ModelLoadError(
            f"{path!r} holds a {type(state).__name__}, not a state dict (a mapping of "
            "parameter names to tensors); save one with torch.save(model.state_dict(), path)"
        )
    return state


def _load_state_dict_model(
    path: str,
    model_class: Callable[..., torch.nn.Module],
    model_params: Mapping[str, Any],
    load_model_args: Mapping[str, Any],
) -> torch.nn.Module:
    state = _read_state_dict(path, load_model_args)
    name = getattr(model_class, "__name__", repr(model_class))
    with load_step(
        f"cannot build {name}(**{dict(model_params)!r}) to load {path!r} into",
        f"check model_params against {name}'s constructor",
    ):
        model = model_class(**model_params)
    with load_step(
        f"state dict {path!r} does not match {name}",
        "check that model_class and model_params are those of the model that was saved",
    ):
        model.load_state_dict(state)
    return model


def _load_torch_script(path: str, load_model_args: Mapping[str, Any]) -> torch.nn.Module:
    with open_model_file(path) as file, load_step(
        f"cannot read {path!r} as a TorchScript model",
        "save one with torch.jit.save(torch.jit.script(model), path), or pass a state dict "
        "as state_dict_path with model_class",
    ):
        return torch.jit.load(file, **{"map_location": _CPU, **load_model_args})


def _run_model(
    method_name: Optional[str],
    keyed: bool,
    batch: Sequence[Any],
    model: torch.nn.Module,
    device: _Device,
    inference_args: _Args,
    model_id: Optional[str],
) -> List[PredictionResult]:
    """Stacks the batch (per key when `keyed`), moves it to `device` and calls the model."""
    method = model if method_name is None else getattr(model, method_name)
    args = inference_args or {}
    with torch.no_grad():
        stacked = to_device((stack_by_key if keyed else stack)(batch, "torch"), device)
        predictions = call_model(
            (lambda inputs: method(**inputs, **args)) if keyed else (lambda x: method(x, **args)),
            stacked,
            (RuntimeError,),
            "check the examples' shape and dtype against what the model was built for",
        )
    return to_prediction_results(batch, predictions, model_id)


def default_tensor_inference_fn(
    batch: Sequence[torch.Tensor],
    model: torch.nn.Module,
    device: _Device,
    inference_args: _Args = None,
    model_id: Optional[str] = None,
) -> Iterable[PredictionResult]:
    """Stacks the batch, moves it to `device` and calls `model(batch, **inference_args)`.

    Args:
        batch: Tensors of one shape, one per example.
        model: The model.
        device: Where the model is.
        inference_args: Extra keyword arguments for the model's `forward`.
        model_id: The id each PredictionResult carries (handlers pass None).

    Returns:
        One PredictionResult per example: the matching row of the model's output.

    Raises:
        InvalidExampleError: if the examples are not tensors, differ in shape, or the model
            rejects their shape or dtype.
    """
    return _run_model(None, False, batch, model, device, inference_args, model_id)


def make_tensor_model_fn(model_fn: str) -> TensorInferenceFn:
    """Returns an inference function that calls the model's method `model_fn` instead.

    Args:
        model_fn: The name of the method, e.g. "generate"; it receives the stacked batch.

    Returns:
        A function like `default_tensor_inference_fn`, for the `inference_fn` argument.
    """
    return functools.partial(_run_model, model_fn, False)


def default_keyed_tensor_inference_fn(
    batch: Sequence[Dict[str, torch.Tensor]],
    model: torch.nn.Module,
    device: _Device,
    inference_args: _Args = None,
    model_id: Optional[str] = None,
) -> Iterable[PredictionResult]:
    """Stacks the batch per key and calls `model(**stacked, **inference_args)`.

    Takes and returns what `default_tensor_inference_fn` does, with a batch of dicts of
    input name to tensor, one per example, all with the same keys.

    Raises:
        InvalidExampleError: if an example is not a dict, the examples differ in keys or in
            a key's shape, or the model rejects them.
    """
    return _run_model(None, True, batch, model, device, inference_args, model_id)


def make_keyed_tensor_model_fn(model_fn: str) -> KeyedTensorInferenceFn:
    """Returns a keyed inference function that calls the model's method `model_fn` instead.

    Args:
        model_fn: The name of the method; it receives the stacked tensors as keyword arguments.

    Returns:
        A function like `default_keyed_tensor_inference_fn`, for the `inference_fn` argument.
    """
    return functools.partial(_run_model, model_fn, True)


class _PytorchHandler(FrameworkHandler):
    """How the tensor and keyed-tensor handlers load a model and call `inference_fn`."""

    metrics_namespace = "BeamML_PyTorch"
    returns_results = True

    def _accept(self, arguments: Dict[str, Any]) -> str:
        self._model_class = arguments["model_class"]
        self._model_params = dict(arguments["model_params"] or {})
        self._device = check_device(arguments["device"])
        self._load_model_args = dict(arguments["load_model_args"] or {})
        return _check_model_source(
            arguments["state_dict_path"], self._model_class, arguments["torch_script_model_path"]
        )

    def _load(self, path: str) -> torch.nn.Module:
        freeze_long_lived_objects()
        if self._model_class is None:
            model = _load_torch_script(path, self._load_model_args)
        else:
            model = _load_state_dict_model(
                path, self._model_class, self._model_params, self._load_model_args
            )
        return place(model, self._device, path)

    def _infer(self, batch: Sequence[Any], model: Any, inference_args: Dict[str, Any]) -> Any:
        with torch.no_grad():
            return self._inference_fn(batch, model, device_of(model, _CPU), inference_args, None)


class PytorchModelHandlerTensor(_PytorchHandler):
    """Runs a PyTorch model on tensors, one tensor per example.

    Args:
        state_dict_path: Where the state dict is (any Beam filesystem path); needs
            `model_class`. Give this or `torch_script_model_path`.
        model_class: The `torch.nn.Module` class the state dict belongs to.
        model_params: Keyword arguments for `model_class`.
        device: 'CPU' or 'GPU' (any case); 'GPU' falls back to the CPU, with a warning,
            where no GPU can take the model; any other value means the CPU, with a
            warning, as in Beam.
        inference_fn: `fn(batch, model, device, inference_args, model_id)` returning
            PredictionResults; by default the batch is stacked and passed to the model. The
            handler passes model_id=None: RunInference names the model on each result.
        torch_script_model_path: Where the TorchScript file is; loaded with `torch.jit.load`.
        load_model_args: Extra keyword arguments for `torch.load` or `torch.jit.load`.
        min_batch_size, max_batch_size, max_batch_duration_secs, max_batch_weight,
            element_size_fn, batch_length_fn, batch_bucket_boundaries, large_model,
            model_copies, **kwargs: Batching (Beam 2.77's arguments, on any Beam),
            sharing and `env_vars`, as every framework handler takes them (see
            `base.HandlerOptions`).

    Raises:
        HandlerArgumentError: (a ValueError and, as in Beam, a RuntimeError) unless
            exactly one of `state_dict_path` (with `model_class`) and
            `torch_script_model_path` is given.
        TypeError: for an unknown keyword argument.
    """

    def __init__(
        self,
        state_dict_path: Optional[str] = None,
        model_class: Optional[Callable[..., torch.nn.Module]] = None,
        model_params: Optional[Dict[str, Any]] = None,
        device: str = "CPU",
        *,
        inference_fn: TensorInferenceFn = default_tensor_inference_fn,
        torch_script_model_path: Optional[str] = None,
        min_batch_size: Optional[int] = None,
        max_batch_size: Optional[int] = None,
        max_batch_duration_secs: Optional[int] = None,
        large_model: bool = False,
        model_copies: Optional[int] = None,
        load_model_args: Optional[Dict[str, Any]] = None,
        max_batch_weight: Optional[int] = None,
        element_size_fn: Optional[Callable[[Any], int]] = None,
        batch_length_fn: Optional[Callable[[Any], int]] = None,
        batch_bucket_boundaries: Optional[List[int]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(locals())


class PytorchModelHandlerKeyedTensor(_PytorchHandler):
    """Runs a PyTorch model on dicts of named tensors, one dict per example.

    Each key's tensors are stacked across the batch and passed to the model as the
    keyword argument of that name. Takes the same arguments as `PytorchModelHandlerTensor`;
    `inference_fn` defaults to `default_keyed_tensor_inference_fn`.
    """

    def __init__(
        self,
        state_dict_path: Optional[str] = None,
        model_class: Optional[Callable[..., torch.nn.Module]] = None,
        model_params: Optional[Dict[str, Any]] = None,
        device: str = "CPU",
        *,
        inference_fn: KeyedTensorInferenceFn = default_keyed_tensor_inference_fn,
        torch_script_model_path: Optional[str] = None,
        min_batch_size: Optional[int] = None,
        max_batch_size: Optional[int] = None,
        max_batch_duration_secs: Optional[int] = None,
        large_model: bool = False,
        model_copies: Optional[int] = None,
        load_model_args: Optional[Dict[str, Any]] = None,
        max_batch_weight: Optional[int] = None,
        element_size_fn: Optional[Callable[[Any], int]] = None,
        batch_length_fn: Optional[Callable[[Any], int]] = None,
        batch_bucket_boundaries: Optional[List[int]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(locals())
