"""The framework base: what every framework handler does, written once.

A framework module (sklearn.py, pytorch.py, ...) keeps Beam's public constructors, whose
bodies pass their arguments here with `super().__init__(locals())`, and three hooks:

- `_accept(arguments)`: checks and keeps the framework's own arguments; returns the path
  of the model.
- `_load(path)`: loads the model at a path.
- `_infer(batch, model, inference_args)`: calls the inference function the way Beam's
  functions for this framework are called.

`FrameworkHandler` does the rest: the model path (`update_model_path`, `get_model_id`),
the batching, sharing and environment options, which inference functions take no
`inference_args`, the metrics namespace, the byte count, naming the model in the errors of
a load or of a batch, and turning a batch's predictions into PredictionResults. Handlers
never stamp a model_id on their results: RunInference names the model that served each
batch, from `get_model_id` for the first model.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from liveinference.batching import HANDLER_BATCHING_ARGUMENTS, handler_batching_kwargs
from liveinference.contract import ModelHandler, PredictionResult
from liveinference.errors import InvalidExampleError
from liveinference.frameworks.batches import example_bytes, to_prediction_results
from liveinference.frameworks.loading import load_step

__all__ = ["FrameworkHandler", "HandlerArgumentError", "HandlerOptions"]

_KNOWN_KWARGS = frozenset({"env_vars"})


class HandlerArgumentError(ValueError, RuntimeError):
    """Constructor arguments a handler cannot work with, e.g. two model sources at once.

    A ValueError, and also the RuntimeError Beam raises for the same arguments (PyTorch's
    model source, Hugging Face's model_uri and model_class), so code written for Beam that
    catches RuntimeError still catches it.
    """


@dataclasses.dataclass(frozen=True)
class HandlerOptions:
    """Batching, cross-process sharing and environment variables of a handler.

    Every framework handler's constructor takes them as Beam 2.77's handlers do:
    `min_batch_size`, `max_batch_size` (the smallest and largest batch `BatchElements`
    makes), `max_batch_duration_secs` (the longest a batch waits to fill, in streaming),
    `max_batch_weight` with `element_size_fn` (the most a batch may weigh, and an
    example's weight), `batch_length_fn` with `batch_bucket_boundaries` (batch examples
    of similar length together), `large_model` (keep one copy of the model per machine
    instead of per process), `model_copies` (how many copies to keep per machine; implies
    sharing) and, in `**kwargs`, `env_vars` (a dict of environment variables set before
    the model loads). RunInference batches as `liveinference.batching` says, on any Beam.

    Attributes:
        batching: The batching arguments given, under `BatchElements`' names
            (`batch_length_fn` as `length_fn`, `batch_bucket_boundaries` as
            `bucket_boundaries`).
        share_across_processes: Keep one copy of the model per machine.
        model_copies: How many copies to keep per machine when sharing.
        env_vars: Environment variables set before the model loads.
    """

    batching: Dict[str, Any] = dataclasses.field(default_factory=dict)
    share_across_processes: bool = False
    model_copies: int = 1
    env_vars: Dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def take(cls, arguments: Dict[str, Any]) -> "HandlerOptions":
        """Removes the options from a constructor's arguments, checks and returns them.

        Args:
            arguments: The constructor's arguments by name; the batching arguments,
                `large_model`, `model_copies` and `kwargs` (its `**kwargs`) are taken
                out where present.

        Raises:
            TypeError: for a keyword argument no handler takes (a likely typo), or a
                batching function that is not callable.
            ValueError: for batch sizes that are not positive or min above max,
                `model_copies` below 1, or batching arguments `check_batching` refuses
                (durations and weights must be finite and positive).
        """
        given = {name: arguments.pop(name, None) for name in HANDLER_BATCHING_ARGUMENTS}
        large_model = arguments.pop("large_model", False)
        copies = arguments.pop("model_copies", None)
        kwargs = arguments.pop("kwargs", {})
        unknown = sorted(set(kwargs) - _KNOWN_KWARGS)
        if unknown:
            raise TypeError(
                f"unknown handler keyword arguments {unknown}; handlers take "
                f"{sorted(_KNOWN_KWARGS)} besides their named parameters"
            )
        low, high = given["min_batch_size"], given["max_batch_size"]
        for name, size in (("min_batch_size", low), ("max_batch_size", high)):
            if size is not None and size < 1:
                raise ValueError(f"{name} must be at least 1, got {size}")
        if low and high and low > high:
            raise ValueError(f"min_batch_size {low} is larger than max_batch_size {high}")
        if copies is not None and copies < 1:
            raise ValueError(f"model_copies must be at least 1, got {copies}")
        batching = handler_batching_kwargs(**given)
        env_vars = dict(kwargs.get("env_vars", {}))
        return cls(batching, large_model or copies is not None, copies or 1, env_vars)

    def batch_elements_kwargs(self) -> Dict[str, Any]:
        """Returns the batching arguments given, as `batching.HandlerBatching` takes them."""
        return dict(self.batching)


class FrameworkHandler(ModelHandler):
    """Base of the framework handlers: one model path, Beam's options, one way to infer.

    A subclass sets the class attributes, implements `_accept`, `_load` and `_infer`,
    and its public constructor calls `super().__init__(locals())`.

    Attributes:
        metrics_namespace: Beam's metrics namespace for the handler.
        fns_without_args: The inference functions that take no `inference_args`;
            `validate_inference_args` refuses them for these, and accepts any for the
            others (Beam's PyTorch and TensorFlow handlers accept any).
        returns_results: True where the inference functions return PredictionResults
            (Beam's PyTorch, TensorFlow, Hugging Face and XGBoost functions do), False
            where they return one prediction per example.

    Args:
        arguments: The public constructor's `locals()`: Beam's arguments by name,
            `inference_fn` and the options among them, `**kwargs` as `kwargs`.

    Raises:
        TypeError: for an unknown keyword argument.
        ValueError: for bad batching options, or what `_accept` refuses.
    """

    metrics_namespace: ClassVar[str] = "RunInference"
    fns_without_args: ClassVar[Tuple[Callable[..., Any], ...]] = ()
    returns_results: ClassVar[bool] = False

    def __init__(self, arguments: Mapping[str, Any]) -> None:
        super().__init__()
        given = {
            name: value
            for name, value in arguments.items()
            if name != "self" and not name.startswith("__")
        }
        self._options = HandlerOptions.take(given)
        self._env_vars = self._options.env_vars
        self._inference_fn = given.pop("inference_fn")
        self._model_path = self._accept(given)

    def _accept(self, arguments: Dict[str, Any]) -> str:
        """Checks and keeps the framework's own constructor arguments.

        Returns:
            The path of the model to load.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement _accept()")

    def _load(self, path: str) -> Any:
        """Loads and returns the model at `path`."""
        raise NotImplementedError(f"{type(self).__name__} must implement _load()")

    def _infer(self, batch: Sequence[Any], model: Any, inference_args: Dict[str, Any]) -> Any:
        """Calls the inference function on the batch, as Beam calls it for the framework."""
        raise NotImplementedError(f"{type(self).__name__} must implement _infer()")

    @property
    def inference_fn(self) -> Callable[..., Any]:
        """The inference function the handler calls: the one given, else its framework's
        default (batched RunInference calls it on a whole table)."""
        return self._inference_fn

    def load_model(self) -> Any:
        """Loads the model at the current path.

        Raises:
            ModelLoadError: naming the path, if the model cannot be loaded.
        """
        with load_step(
            f"cannot load model {self.get_model_id()!r}",
            "check that it was saved for this handler and with the arguments given here",
        ):
            return self._load(self._model_path)

    def run_inference(
        self, batch: Sequence[Any], model: Any, inference_args: Optional[Dict[str, Any]] = None
    ) -> Iterable[PredictionResult]:
        """Runs the inference function on a batch; one PredictionResult per prediction.

        Args:
            batch: The examples.
            model: The model `load_model` returned.
            inference_args: Extra arguments for the model call; they are not batched.

        Returns:
            The examples paired with the inference function's predictions in order, as far
            as both go, as in Beam; model_id is None, and RunInference names the model that
            served the batch. A custom inference function that returns fewer predictions
            than examples leaves the last examples without one: RunInference dead-letters
            them (stage "inference") with exception handling on, else drops them with a
            warning. Surplus predictions are dropped.

        Raises:
            InvalidExampleError: naming the model, if the examples do not fit it.
        """
        try:
            output = self._infer(batch, model, inference_args or {})
            return output if self.returns_results else to_prediction_results(batch, output)
        except InvalidExampleError as error:
            raise InvalidExampleError(f"model {self.get_model_id()!r}: {error}") from error

    def update_model_path(self, model_path: Optional[str] = None) -> None:
        """Points the handler at a new model; the next `load_model` reads it."""
        self._model_path = model_path or self._model_path

    def get_model_id(self) -> str:
        """Returns the path of the model the handler loads: the id its predictions carry."""
        return self._model_path or type(self).__name__

    def validate_inference_args(self, inference_args: Optional[Dict[str, Any]]) -> None:
        """Accepts any `inference_args`, unless the inference function takes none.

        Raises:
            ValueError: for `inference_args` given to one of `fns_without_args`.
        """
        if self._inference_fn in self.fns_without_args:
            super().validate_inference_args(inference_args)

    def get_metrics_namespace(self) -> str:
        """Returns Beam's metrics namespace for this handler."""
        return self.metrics_namespace

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        """Returns the summed size of the examples' data in bytes."""
        return sum(map(example_bytes, batch))

    def batch_elements_kwargs(self) -> Dict[str, Any]:
        """Returns the batching arguments given to the constructor, as `BatchElements`
        names them (`length_fn`, `bucket_boundaries` for Beam's `batch_*` arguments)."""
        return self._options.batch_elements_kwargs()

    def share_model_across_processes(self) -> bool:
        """Returns True for `large_model=True` or an explicit `model_copies`."""
        return self._options.share_across_processes

    def model_copies(self) -> int:
        """Returns the number of copies of a model shared across processes."""
        return self._options.model_copies
