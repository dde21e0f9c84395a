"""What every framework does to a batch: stack it, place it, call the model, count its bytes.

The framework modules call these instead of writing their own: one stacking function for
numpy arrays, torch tensors and TensorFlow tensors (and one for dicts of them), one way to
place a torch model on a device, one byte count, and one way to pair a batch with its
predictions. Errors that come from the examples are `InvalidExampleError`s that say what
arrived and what would fit.

This module imports neither torch nor TensorFlow: a batch of their tensors means the
framework is already imported, and `place` imports torch only when a model loads.
"""

from __future__ import annotations

import itertools
import logging
import sys
from itertools import repeat
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Type

import numpy

from liveinference.contract import PredictionResult
from liveinference.errors import InvalidExampleError

__all__ = [
    "PAD_HINT",
    "call_model",
    "check_columns",
    "check_device",
    "device_of",
    "example_bytes",
    "first_line",
    "place",
    "stack",
    "stack_by_key",
    "to_device",
    "to_prediction_results",
]

_LOG = logging.getLogger(__name__)

PAD_HINT = "pad or resize them before RunInference"
_TENSOR_NAMES = {"torch": "torch.Tensor", "tensorflow": "tf.Tensor"}
# What `stack(into=...)` accepts: the libraries whose tensors may be stacked, or None when
# the library's own stack converts any array-like example.
_STRICT = {
    "numpy": None, "tensorflow": None, "torch": ("torch",), "tensors": ("torch", "tensorflow")
}


def first_line(error: BaseException) -> str:
    """Returns the first line of an error's message, or its type name if it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _library(example: Any) -> str:
    """Returns the top-level module of the example's type, e.g. "torch" or "numpy"."""
    return type(example).__module__.split(".")[0]


def _shapes(examples: Sequence[Any]) -> List[tuple]:
    return sorted({tuple(numpy.shape(example)) for example in examples})


def _stack_errors(library: str) -> Tuple[Type[BaseException], ...]:
    """The errors a library's stack raises for examples that do not fit together."""
    errors: Tuple[Type[BaseException], ...] = (ValueError, TypeError, RuntimeError)
    if library == "tensorflow":
        errors += (sys.modules["tensorflow"].errors.OpError,)
    return errors


def _not_tensors(examples: Sequence[Any], allowed: Sequence[str], what: str) -> InvalidExampleError:
    kinds = sorted({type(example).__name__ for example in examples})
    names = " or ".join(_TENSOR_NAMES[library] for library in allowed)
    return InvalidExampleError(
        f"{what} must be {names}, got {kinds}; convert them first, e.g. with torch.as_tensor"
    )


def stack(
    examples: Sequence[Any], into: str = "numpy", *, what: str = "examples", hint: str = PAD_HINT
) -> Any:
    """Stacks examples of one shape into one batch along a new first axis.

    Args:
        examples: The examples.
        into: "numpy" or "tensorflow": that library's `stack` builds the batch, from any
            array-like examples; "torch": the examples must be torch tensors; "tensors":
            torch or TensorFlow tensors, stacked by their own library.
        what: What the examples are, for error messages (e.g. "tensors under key 'ids'").
        hint: What to do about examples of different shapes.

    Returns:
        The batch: a numpy array, a torch tensor or a TensorFlow tensor. A NumPy array of
        two or more dimensions given with `into="numpy"` is a batch already (its rows are
        the examples) and is returned as it is.

    Raises:
        InvalidExampleError: if the examples are not tensors of an accepted library, or
            differ in shape.
    """
    if into == "numpy" and isinstance(examples, numpy.ndarray) and examples.ndim > 1:
        return examples  # already stacked: a table RunInference(...).on_batches() scores
    allowed = _STRICT[into]
    library = into if allowed is None else _library(examples[0])
    if allowed is not None and library not in allowed:
        raise _not_tensors(examples, allowed, what)
    try:
        return sys.modules[library].stack(list(examples))
    except _stack_errors(library) as error:
        if allowed is not None and any(_library(example) != library for example in examples):
            raise _not_tensors(examples, allowed, what) from error
        shapes = _shapes(examples)
        if len(shapes) > 1:
            raise InvalidExampleError(
                f"{what} must all have one shape to be stacked into a batch; this batch has "
                f"shapes {shapes}; {hint}"
            ) from error
        raise InvalidExampleError(
            f"{what} cannot be stacked into a batch: {first_line(error)}"
        ) from error


def stack_by_key(
    batch: Sequence[Mapping[str, Any]], into: str, *, hint: str = PAD_HINT
) -> Dict[str, Any]:
    """Stacks the values of each key across a batch of dicts (e.g. a tokenizer's outputs).

    Args:
        batch: Dicts of input name to tensor, one per example, all with the same keys.
        into: As for `stack`.
        hint: What to do about values of different shapes under one key.

    Returns:
        A dict of input name to the stacked batch of that input.

    Raises:
        InvalidExampleError: if an example is not a dict, the examples differ in keys, or
            the values under a key cannot be stacked.
    """
    if not all(isinstance(example, Mapping) for example in batch):
        kinds = sorted({type(example).__name__ for example in batch})
        raise InvalidExampleError(
            f"examples must be dicts of input name to tensor, got {kinds}; give plain "
            "tensors to the framework's ...ModelHandlerTensor instead"
        )
    counts: Dict[str, int] = {}
    for key in itertools.chain.from_iterable(batch):
        counts[key] = counts.get(key, 0) + 1
    partial = {key: count for key, count in counts.items() if count < len(batch)}
    if partial:
        found = ", ".join(f"{key!r} is in {count}" for key, count in sorted(partial.items()))
        raise InvalidExampleError(
            f"examples must all have the same keys; of the {len(batch)} examples in this "
            f"batch, {found}"
        )
    return {
        key: stack([example[key] for example in batch], into, what=f"tensors under key {key!r}",
                   hint=hint)
        for key in counts
    }


def check_columns(frames: Iterable[Any], names: Sequence[str]) -> None:
    """Checks that every DataFrame has the columns the model was fitted on.

    Raises:
        InvalidExampleError: naming the columns an example lacks.
    """
    for frame in frames:
        missing = [name for name in names if name not in frame.columns]
        if missing:
            raise InvalidExampleError(
                f"the model needs columns {list(names)}; an example lacks {missing}"
            )


def _describe(stacked: Any) -> str:
    if isinstance(stacked, Mapping):
        return "shapes " + str({key: tuple(value.shape[1:]) for key, value in stacked.items()})
    return f"shape {tuple(stacked.shape[1:])} and dtype {stacked.dtype}"


def call_model(
    call: Callable[[Any], Any], stacked: Any, errors: Tuple[Type[BaseException], ...], hint: str
) -> Any:
    """Calls the model on a stacked batch; an error of `errors` blames the examples.

    Out-of-memory errors are re-raised as they are: they are not the examples' fault.

    Args:
        call: Calls the model on the stacked batch.
        stacked: The stacked batch, or a dict of stacked inputs.
        errors: The error types that mean the model cannot take these examples.
        hint: What to check, for the error message.

    Returns:
        What the model returned.

    Raises:
        InvalidExampleError: for an error of `errors`, naming the examples' shape.
    """
    try:
        return call(stacked)
    except errors as error:
        if "OutOfMemory" in type(error).__name__:
            raise
        raise InvalidExampleError(
            f"the model cannot take examples of {_describe(stacked)}: {first_line(error)}; "
            f"{hint}"
        ) from error


def check_device(device: Any, strict: bool = False) -> str:
    """Returns 'CPU' or 'GPU' for a device named so in any case.

    Any other value means the CPU, with a warning, as in Beam's PyTorch and Hugging Face
    tensor handlers (they use the GPU for 'GPU' only); with `strict`, as in Beam's Hugging
    Face pipeline handler, it is refused.

    Raises:
        ValueError: for another device, with `strict`.
    """
    name = device.upper() if isinstance(device, str) else None
    if name in ("CPU", "GPU"):
        return name
    if strict:
        raise ValueError(f"device must be 'CPU' or 'GPU', got {device!r}")
    _LOG.warning("device %r is neither 'CPU' nor 'GPU'; running on CPU, as Beam does", device)
    return "CPU"


def device_of(model: Any, default: Any) -> Any:
    """Returns where a torch model's first parameter or buffer lives; `default` if none."""
    if not callable(getattr(model, "parameters", None)):
        return default
    buffers = model.buffers() if callable(getattr(model, "buffers", None)) else ()
    first = next(itertools.chain(model.parameters(), buffers), None)
    return default if first is None else first.device


def to_device(stacked: Any, device: Any) -> Any:
    """Moves a stacked torch batch, or a dict of them, to `device`; leaves other values."""
    if isinstance(stacked, Mapping):
        return {key: to_device(value, device) for key, value in stacked.items()}
    return stacked.to(device) if _library(stacked) == "torch" else stacked


def place(model: Any, device: str, model_id: str) -> Any:
    """Readies a torch model for inference: eval mode, no gradients, on the asked device.

    A TorchScript model keeps its parameters' `requires_grad` (it does not support
    changing them); a model that is not a `torch.nn.Module` is returned as it is.

    Args:
        model: The loaded model, on the CPU.
        device: 'CPU' or 'GPU'; 'GPU' falls back to the CPU, with a warning, where CUDA
            is not available or the GPU refuses the model.
        model_id: The model's path, for the log.

    Returns:
        The model, moved.
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        return model
    if not isinstance(model, torch.jit.ScriptModule):
        model.requires_grad_(False)
    model.eval()
    if device == "GPU" and not torch.cuda.is_available():
        _LOG.warning(
            "model %s asked for device='GPU', but CUDA is not available; running it on CPU",
            model_id,
        )
    elif device == "GPU":
        try:
            model.to(torch.device("cuda"))
        except RuntimeError as error:
            _LOG.warning("cannot move model %s to the GPU (%s); running it on CPU", model_id, error)
            model.to(torch.device("cpu"))
    _LOG.info("model %s is ready on %s", model_id, device_of(model, torch.device("cpu")))
    return model


def _dict_bytes(example: Mapping[Any, Any]) -> int:
    return sum(example_bytes(value) for value in example.values())


def _frame_bytes(example: Any) -> int:
    return int(numpy.sum(example.memory_usage(deep=True)))


def _sparse_bytes(example: Any) -> int:
    return int(example.data.nbytes)


def _tf_bytes(example: Any) -> int:
    return int((example.shape.num_elements() or 0) * example.dtype.size)


def _array_bytes(example: Any) -> int:
    return int(example.nbytes)


def _measure_for(example: Any) -> Callable[[Any], int]:
    """Returns how to count the bytes of examples of this example's type."""
    if isinstance(example, Mapping):
        return _dict_bytes
    if callable(getattr(example, "element_size", None)):
        return _array_bytes  # a torch tensor: its nbytes counts a view's elements only
    if callable(getattr(example, "memory_usage", None)):
        return _frame_bytes
    if hasattr(example, "nnz"):
        return _sparse_bytes
    if _library(example) == "tensorflow":
        return _tf_bytes
    if isinstance(example, numpy.ndarray):
        return _array_bytes
    return sys.getsizeof


# How to count an example's bytes, by its type: decided once per type, not once per example.
_MEASURES: Dict[type, Callable[[Any], int]] = {}


def example_bytes(example: Any) -> int:
    """Returns the in-memory size of one example's data in bytes.

    Tensors and arrays count their elements' bytes, DataFrames their deep memory usage,
    sparse matrices their stored values, dicts the sum of their values; anything else its
    `sys.getsizeof`.
    """
    kind = type(example)
    measure = _MEASURES.get(kind)
    if measure is None:
        measure = _MEASURES[kind] = _measure_for(example)
    return measure(example)


def to_prediction_results(
    batch: Sequence[Any], predictions: Any, model_id: Optional[str] = None
) -> List[PredictionResult]:
    """Pairs each example with its prediction, in order, as Beam does.

    As in Beam, examples and predictions are paired as far as both go: if an inference
    function returns fewer predictions than examples, the last examples get none; if it
    returns more, the extra predictions are dropped.

    Args:
        batch: The examples.
        predictions: One prediction per example, or a dict of per-example sequences
            (multi-output models), which becomes one dict per example.
        model_id: The id the results carry; handlers leave it None, and RunInference
            names the model that served the batch.
    """
    if isinstance(predictions, dict):
        names = list(predictions)
        rows: Iterable[Any] = [dict(zip(names, values)) for values in zip(*predictions.values())]
    else:
        rows = predictions
    # tuple.__new__ builds each result without a Python-level __new__ call per element.
    return list(map(tuple.__new__, repeat(PredictionResult), zip(batch, rows, repeat(model_id))))
