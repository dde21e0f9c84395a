"""PyTorch handlers: tensors, or dicts of named tensors, in; the model's outputs out.

A drop-in for Beam's `ml.inference.pytorch_inference`: the same two handlers, the same
constructor arguments and the same inference functions. A model comes either from a state
dict plus the `torch.nn.Module` class it belongs to, or from a TorchScript file.

This module is longer than the style guide's 400 lines because it mirrors Beam's public
surface one to one (two handlers with Beam's full constructors, four inference functions),
and a framework lives in one module.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import torch

from liveinference.contract import PredictionResult
from liveinference.errors import InvalidExampleError, ModelLoadError
from liveinference.frameworks.files import open_model_file
from liveinference.frameworks.options import HandlerOptions, OptionsHandler
from liveinference.results import to_prediction_results

__all__ = [
    "KeyedTensorInferenceFn",
    "PytorchModelHandlerKeyedTensor",
    "PytorchModelHandlerTensor",
    "TensorInferenceFn",
    "default_keyed_tensor_inference_fn",
    "default_tensor_inference_fn",
    "make_keyed_tensor_model_fn",
    "make_tensor_model_fn",
]

_LOG = logging.getLogger(__name__)

_CPU = torch.device("cpu")
_DEVICES = {"CPU": _CPU, "GPU": torch.device("cuda")}

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


def _check_model_source(
    state_dict_path: Optional[str],
    model_class: Optional[Callable[..., torch.nn.Module]],
    torch_script_model_path: Optional[str],
) -> str:
    """Returns the model path, once sure exactly one way of loading the model was given."""
    if state_dict_path and torch_script_model_path:
        raise ValueError(
            f"both state_dict_path {state_dict_path!r} and torch_script_model_path "
            f"{torch_script_model_path!r} were given; give one: state_dict_path with "
            "model_class, or torch_script_model_path"
        )
    if torch_script_model_path and model_class is not None:
        raise ValueError(
            f"model_class {model_class.__name__} was given with torch_script_model_path "
            f"{torch_script_model_path!r}; a TorchScript model carries its own code, so drop "
            "model_class, or give state_dict_path instead of torch_script_model_path"
        )
    if state_dict_path and model_class is None:
        raise ValueError(
            f"state_dict_path {state_dict_path!r} needs model_class, the torch.nn.Module "
            "class whose parameters it holds (and model_params, its constructor arguments)"
        )
    path = state_dict_path or torch_script_model_path
    if not path:
        raise ValueError(
            "no model was given: pass state_dict_path with model_class for a saved state "
            "dict, or torch_script_model_path for a TorchScript file"
        )
    return path


def _device_named(device: str) -> torch.device:
    """Returns the torch device for 'CPU' or 'GPU' (any case)."""
    found = _DEVICES.get(device.upper()) if isinstance(device, str) else None
    if found is None:
        raise ValueError(f"device must be 'CPU' or 'GPU', got {device!r}")
    return found


def _read_state_dict(path: str, load_model_args: Mapping[str, Any]) -> Mapping[str, Any]:
    with open_model_file(path) as file:
        try:
            state = torch.load(file, **{"map_location": _CPU, **load_model_args})
        except Exception as error:
            raise ModelLoadError(
                f"cannot read {path!r} as a PyTorch state dict ({type(error).__name__}: "
                f"{error}); save one with torch.save(model.state_dict(), path), or if it is "
                "a TorchScript file, pass it as torch_script_model_path"
            ) from error
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
    try:
        model = model_class(**model_params)
    except Exception as error:
        raise ModelLoadError(
            f"cannot build {name}(**{dict(model_params)!r}) to load {path!r} into "
            f"({type(error).__name__}: {error}); check model_params against {name}'s constructor"
        ) from error
    try:
        model.load_state_dict(state)
    except Exception as error:
        raise ModelLoadError(
            f"state dict {path!r} does not match {name}: {error}; check that model_class "
            "and model_params are those of the model that was saved"
        ) from error
    model.requires_grad_(False)
    return model


def _load_torch_script(path: str, load_model_args: Mapping[str, Any]) -> torch.nn.Module:
    with open_model_file(path) as file:
        try:
            return torch.jit.load(file, **{"map_location": _CPU, **load_model_args})
        except Exception as error:
            raise ModelLoadError(
                f"cannot read {path!r} as a TorchScript model ({type(error).__name__}: "
                f"{error}); save one with torch.jit.save(torch.jit.script(model), path), or "
                "pass a state dict as state_dict_path with model_class"
            ) from error


def _place(model: torch.nn.Module, device: torch.device, model_id: str) -> torch.nn.Module:
    """Moves `model` to `device` for inference; to the CPU if the GPU is missing or refuses it."""
    if device.type == "cuda" and not torch.cuda.is_available():
        _LOG.warning(
            "model %s asked for device='GPU', but CUDA is not available; running it on CPU",
            model_id,
        )
    elif device.type == "cuda":
        try:
            model.to(device)
        except RuntimeError as error:
            _LOG.warning("cannot move model %s to the GPU (%s); running it on CPU", model_id, error)
            model.to(_CPU)
    model.eval()
    _LOG.info("model %s is ready on %s", model_id, _device_of(model))
    return model


def _device_of(model: torch.nn.Module) -> torch.device:
    """Returns where the model's first parameter or buffer lives (the CPU if it has none)."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return _CPU if first is None else first.device


def _stack(tensors: Sequence[Any], model_id: Optional[str], what: str) -> torch.Tensor:
    """Stacks examples into one batch tensor; explains why when they cannot be stacked."""
    try:
        return torch.stack(list(tensors))
    except (RuntimeError, TypeError) as error:
        others = sorted({type(t).__name__ for t in tensors if not isinstance(t, torch.Tensor)})
        if others:
            problem = (
                f"must be torch.Tensor, got {others}; convert them first, "
                "e.g. with torch.as_tensor"
            )
        else:
            shapes = sorted({tuple(t.shape) for t in tensors})
            problem = (
                f"must all have one shape to be stacked into a batch; this batch has shapes "
                f"{shapes}; pad or resize them before RunInference"
                if len(shapes) > 1
                else f"cannot be stacked into a batch: {error}"
            )
        raise InvalidExampleError(f"{what} for model {model_id!r} {problem}") from error


def _stack_by_key(
    batch: Sequence[Dict[str, torch.Tensor]], model_id: Optional[str]
) -> Dict[str, torch.Tensor]:
    """Stacks the tensors of each key across the batch."""
    grouped: Dict[str, List[torch.Tensor]] = {}
    try:
        for example in batch:
            for key, tensor in example.items():
                grouped.setdefault(key, []).append(tensor)
    except AttributeError as error:
        kinds = sorted({type(example).__name__ for example in batch})
        raise InvalidExampleError(
            f"examples for model {model_id!r} must be dicts of input name to tensor, got "
            f"{kinds}; use PytorchModelHandlerTensor for plain tensors"
        ) from error
    partial = {key: len(tensors) for key, tensors in grouped.items() if len(tensors) < len(batch)}
    if partial:
        counts = ", ".join(f"{key!r} is in {count}" for key, count in sorted(partial.items()))
        raise InvalidExampleError(
            f"examples for model {model_id!r} must all have the same keys; of the "
            f"{len(batch)} examples in this batch, {counts}"
        )
    return {
        key: _stack(tensors, model_id, f"tensors under key {key!r}")
        for key, tensors in grouped.items()
    }


def _call(run: Callable[[], Any], model_id: Optional[str], seen: Callable[[], str]) -> Any:
    """Runs the model call `run`; an error it raises becomes an InvalidExampleError.

    `seen` describes the input for the message; it runs only when the call fails.
    """
    try:
        return run()
    except torch.cuda.OutOfMemoryError:
        raise
    except RuntimeError as error:
        raise InvalidExampleError(
            f"model {model_id!r} cannot take {seen()}: {error}; check the examples' shape and "
            "dtype against what the model was built for"
        ) from error


def _infer_tensors(
    method_name: Optional[str],
    batch: Sequence[torch.Tensor],
    model: torch.nn.Module,
    device: _Device,
    inference_args: _Args,
    model_id: Optional[str],
) -> List[PredictionResult]:
    method = model if method_name is None else getattr(model, method_name)
    with torch.no_grad():
        stacked = _stack(batch, model_id, "examples").to(device)
        predictions = _call(
            lambda: method(stacked, **(inference_args or {})),
            model_id,
            lambda: f"examples of shape {tuple(stacked.shape[1:])} and dtype {stacked.dtype}",
        )
    return to_prediction_results(batch, predictions, model_id)


def _infer_keyed(
    method_name: Optional[str],
    batch: Sequence[Dict[str, torch.Tensor]],
    model: torch.nn.Module,
    device: _Device,
    inference_args: _Args,
    model_id: Optional[str],
) -> List[PredictionResult]:
    method = model if method_name is None else getattr(model, method_name)
    with torch.no_grad():
        stacked = {key: value.to(device) for key, value in _stack_by_key(batch, model_id).items()}
        predictions = _call(
            lambda: method(**stacked, **(inference_args or {})),
            model_id,
            lambda: "examples of shapes "
            + str({key: tuple(tensor.shape[1:]) for key, tensor in stacked.items()}),
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
        model_id: The id each PredictionResult carries.

    Returns:
        One PredictionResult per example: the matching row of the model's output.

    Raises:
        InvalidExampleError: if the examples are not tensors, differ in shape, or the model
            rejects their shape or dtype.
    """
    return _infer_tensors(None, batch, model, device, inference_args, model_id)


def make_tensor_model_fn(model_fn: str) -> TensorInferenceFn:
    """Returns an inference function that calls the model's method `model_fn` instead.

    Args:
        model_fn: The name of the method, e.g. "generate"; it receives the stacked batch.

    Returns:
        A function like `default_tensor_inference_fn`, for the `inference_fn` argument.
    """

    def inference_fn(
        batch: Sequence[torch.Tensor],
        model: torch.nn.Module,
        device: _Device,
        inference_args: _Args = None,
        model_id: Optional[str] = None,
    ) -> Iterable[PredictionResult]:
        return _infer_tensors(model_fn, batch, model, device, inference_args, model_id)

    return inference_fn


def default_keyed_tensor_inference_fn(
    batch: Sequence[Dict[str, torch.Tensor]],
    model: torch.nn.Module,
    device: _Device,
    inference_args: _Args = None,
    model_id: Optional[str] = None,
) -> Iterable[PredictionResult]:
    """Stacks the batch per key and calls `model(**stacked, **inference_args)`.

    Args:
        batch: Dicts of input name to tensor, one per example, all with the same keys.
        model: The model.
        device: Where the model is.
        inference_args: Extra keyword arguments for the model's `forward`.
        model_id: The id each PredictionResult carries.

    Returns:
        One PredictionResult per example: the matching row of the model's output.

    Raises:
        InvalidExampleError: if an example is not a dict, the examples differ in keys or in
            a key's shape, or the model rejects them.
    """
    return _infer_keyed(None, batch, model, device, inference_args, model_id)


def make_keyed_tensor_model_fn(model_fn: str) -> KeyedTensorInferenceFn:
    """Returns a keyed inference function that calls the model's method `model_fn` instead.

    Args:
        model_fn: The name of the method; it receives the stacked tensors as keyword arguments.

    Returns:
        A function like `default_keyed_tensor_inference_fn`, for the `inference_fn` argument.
    """

    def inference_fn(
        batch: Sequence[Dict[str, torch.Tensor]],
        model: torch.nn.Module,
        device: _Device,
        inference_args: _Args = None,
        model_id: Optional[str] = None,
    ) -> Iterable[PredictionResult]:
        return _infer_keyed(model_fn, batch, model, device, inference_args, model_id)

    return inference_fn


class _PytorchHandler(OptionsHandler):
    """What the tensor and keyed-tensor handlers share: the model file, its loading, options."""

    def __init__(
        self,
        state_dict_path: Optional[str],
        model_class: Optional[Callable[..., torch.nn.Module]],
        model_params: Optional[Dict[str, Any]],
        device: str,
        inference_fn: Callable[..., Iterable[PredictionResult]],
        torch_script_model_path: Optional[str],
        load_model_args: Optional[Dict[str, Any]],
        options: HandlerOptions,
    ) -> None:
        super().__init__()
        self._model_path = _check_model_source(
            state_dict_path, model_class, torch_script_model_path
        )
        self._model_class = model_class
        self._model_params = dict(model_params or {})
        self._device = _device_named(device)
        self._inference_fn = inference_fn
        self._load_model_args = dict(load_model_args or {})
        self._configure(options)

    def load_model(self) -> torch.nn.Module:
        """Loads the model onto the CPU, then moves it to the device, in eval mode.

        With device='GPU' and no usable GPU, a warning is logged and the model runs on CPU.

        Raises:
            ModelLoadError: if the file is missing or unreadable, is not a state dict or
                TorchScript file as expected, or the state dict does not fit `model_class`.
        """
        path = self._model_path
        if self._model_class is None:
            model = _load_torch_script(path, self._load_model_args)
        else:
            model = _load_state_dict_model(
                path, self._model_class, self._model_params, self._load_model_args
            )
        return _place(model, self._device, path)

    def run_inference(
        self,
        batch: Sequence[Any],
        model: torch.nn.Module,
        inference_args: _Args = None,
    ) -> Iterable[PredictionResult]:
        """Runs `inference_fn` on the batch under `torch.no_grad()`.

        Args:
            batch: The examples; the default inference functions stack them.
            model: The model `load_model` returned.
            inference_args: Extra keyword arguments for the model's `forward`; unlike the
                examples they are not batched.

        Returns:
            One PredictionResult per example, whose model_id is the model's path.

        Raises:
            InvalidExampleError: from the default inference functions, for examples that
                cannot be stacked or that the model rejects.
        """
        with torch.no_grad():
            return self._inference_fn(
                batch, model, _device_of(model), inference_args or {}, self._model_path
            )

    def update_model_path(self, model_path: Optional[str] = None) -> None:
        """Points the handler at a new state dict or TorchScript file, whichever it uses."""
        self._model_path = model_path or self._model_path

    def validate_inference_args(self, inference_args: Optional[Dict[str, Any]]) -> None:
        """Accepts any `inference_args`: they go to the model's `forward` as keywords."""

    def get_metrics_namespace(self) -> str:
        """Returns `BeamML_PyTorch`, Beam's namespace for PyTorch."""
        return "BeamML_PyTorch"


class PytorchModelHandlerTensor(_PytorchHandler):
    """Runs a PyTorch model on tensors, one tensor per example.

    Args:
        state_dict_path: Where the state dict is (any Beam filesystem path); needs
            `model_class`. Give this or `torch_script_model_path`.
        model_class: The `torch.nn.Module` class the state dict belongs to.
        model_params: Keyword arguments for `model_class`.
        device: 'CPU' or 'GPU' (any case); 'GPU' falls back to the CPU, with a warning,
            where no GPU can take the model.
        inference_fn: `fn(batch, model, device, inference_args, model_id)` returning
            PredictionResults; by default the batch is stacked and passed to the model.
        torch_script_model_path: Where the TorchScript file is; loaded with `torch.jit.load`.
        min_batch_size: The smallest batch `BatchElements` makes.
        max_batch_size: The largest batch `BatchElements` makes.
        max_batch_duration_secs: The longest a batch waits to fill, in streaming.
        large_model: Keep one copy of the model per machine instead of per process.
        model_copies: The number of copies to keep per machine (implies sharing).
        load_model_args: Extra keyword arguments for `torch.load` or `torch.jit.load`.
        **kwargs: `env_vars`, a dict of environment variables set before loading.

    Raises:
        ValueError: unless exactly one of `state_dict_path` (with `model_class`) and
            `torch_script_model_path` is given, or for a device other than 'CPU' or 'GPU'.
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
        **kwargs: Any,
    ) -> None:
        options = HandlerOptions.of(
            min_batch_size, max_batch_size, max_batch_duration_secs, large_model, model_copies,
            kwargs,
        )
        super().__init__(
            state_dict_path, model_class, model_params, device, inference_fn,
            torch_script_model_path, load_model_args, options,
        )

    def get_num_bytes(self, batch: Sequence[torch.Tensor]) -> int:
        """Returns the summed size of the tensors' data in bytes."""
        return sum(tensor.element_size() * tensor.nelement() for tensor in batch)


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
        **kwargs: Any,
    ) -> None:
        options = HandlerOptions.of(
            min_batch_size, max_batch_size, max_batch_duration_secs, large_model, model_copies,
            kwargs,
        )
        super().__init__(
            state_dict_path, model_class, model_params, device, inference_fn,
            torch_script_model_path, load_model_args, options,
        )

    def get_num_bytes(self, batch: Sequence[Dict[str, torch.Tensor]]) -> int:
        """Returns the summed size of all the examples' tensors' data in bytes."""
        return sum(
            tensor.element_size() * tensor.nelement()
            for example in batch
            for tensor in example.values()
        )
