"""The handler contract: what a user subclasses, and the records RunInference emits.

`ModelHandler` mirrors Beam's `ml.inference.base.ModelHandler` method for method, so a
handler written for Beam runs here unchanged. Only `load_model` and `run_inference` must be
written; every other method has a default. The wrappers its `with_*` builders return live
here too, on `Delegating`, which forwards every contract method: they are part of the
contract, and keeping them in this module means it imports nothing of the package.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from typing import (
    Any,
    Callable,
    Dict,
    Generic,
    Iterable,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Protocol,
    Sequence,
    TypeVar,
    Union,
    runtime_checkable,
)

__all__ = [
    "CONTRACT_METHODS",
    "Delegating",
    "KeyModelMapping",
    "KeyModelPathMapping",
    "ModelHandler",
    "ModelMetadata",
    "ModelSet",
    "NoBatching",
    "PostProcessing",
    "PreProcessing",
    "PredictionResult",
    "is_prediction",
    "model_id_of",
]

ExampleT = TypeVar("ExampleT")
PredictionT = TypeVar("PredictionT")
ModelT = TypeVar("ModelT")
KeyT = TypeVar("KeyT")


class PredictionResult(NamedTuple):
    """One example, its inference, and the id of the model that produced it.

    Attributes:
        example: The input example.
        inference: The model's output for that example.
        model_id: The id (usually the path) of the model that made the inference.
    """

    example: Any
    inference: Any
    model_id: Optional[str] = None


_PREDICTION_FIELDS = ("example", "inference", "model_id")


def is_prediction(value: Any) -> bool:
    """Returns True for a PredictionResult: ours, Beam's, or any NamedTuple of its fields."""
    return isinstance(value, tuple) and getattr(type(value), "_fields", None) == _PREDICTION_FIELDS


def model_id_of(value: Any) -> Optional[str]:
    """Returns the model_id of a prediction or a `(key, prediction)` pair, else None."""
    if is_prediction(value):
        return value.model_id
    if isinstance(value, tuple) and len(value) == 2 and is_prediction(value[1]):
        return value[1].model_id
    return None


class ModelMetadata(NamedTuple):
    """Names a model version to serve.

    Attributes:
        model_id: Where the model is, usually a path; used to load it.
        model_name: A short human-readable name; prefixes the metrics of that model.
    """

    model_id: str
    model_name: str


@dataclasses.dataclass(frozen=True)
class KeyModelPathMapping(Generic[KeyT]):
    """Points the handlers of `keys` in a per-key `KeyedModelHandler` at a new model path.

    Attributes:
        keys: The keys whose model is replaced.
        update_path: The path of the new model.
        model_id: Accepted as in Beam (which labels metrics with it); unused here.
            Predictions of those keys carry the path (their handler's `get_model_id()`).
    """

    keys: List[KeyT]
    update_path: str
    model_id: str = ""


@runtime_checkable
class ModelSet(Protocol):
    """A loaded model made of several models, one per group of keys.

    A per-key `KeyedModelHandler` loads one. RunInference asks it which model serves a key
    (to stamp that key's predictions and dead letters), and refresh asks it for a copy with
    some keys repointed; neither needs to know how the set is built.
    """

    def model_id_for(self, key: Any) -> str:
        """Returns the id of the model serving `key`.

        Raises:
            KeyError: if no model serves `key`.
        """

    def refreshed(self, updates: Sequence[KeyModelPathMapping]) -> "ModelSet":
        """Returns a new set in which the listed keys serve newly loaded models.

        Raises:
            KeyError: if no model serves one of the keys.
            Exception: whatever loading a new model raises.
        """


class ModelHandler(Generic[ExampleT, PredictionT, ModelT]):
    """Loads a model and runs it on batches of examples.

    Subclasses implement `load_model` and `run_inference`; the rest have defaults.
    Keyword argument `env_vars` (a dict) of framework handlers sets environment
    variables before the model loads.
    """

    def __init__(self) -> None:
        self._env_vars: Dict[str, str] = {}

    def load_model(self) -> ModelT:
        """Loads and returns the model.

        Raises:
            NotImplementedError: if the subclass does not implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement load_model()")

    def run_inference(
        self,
        batch: Sequence[ExampleT],
        model: ModelT,
        inference_args: Optional[Dict[str, Any]] = None,
    ) -> Iterable[PredictionT]:
        """Runs `model` on a batch of examples.

        Args:
            batch: The examples.
            model: The model `load_model` returned.
            inference_args: Extra keyword arguments for the framework's predict call.

        Returns:
            One prediction per example, in order.

        Raises:
            NotImplementedError: if the subclass does not implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement run_inference()")

    def get_num_bytes(self, batch: Sequence[ExampleT]) -> int:
        """Returns the size of a batch in bytes (its pickled size by default)."""
        return len(pickle.dumps(batch))

    def get_model_id(self) -> str:
        """Returns the id that predictions of this handler's own model carry.

        RunInference stamps it on every prediction and dead letter of the first model;
        handlers never stamp it themselves. Framework handlers return their model path.

        Returns:
            By default the handler's class name, so that a custom handler has an id too.
        """
        return type(self).__name__

    def get_metrics_namespace(self) -> str:
        """Returns the namespace of the metrics RunInference reports for this handler."""
        return "RunInference"

    def get_resource_hints(self) -> dict:
        """Returns Beam resource hints for the inference step (none by default)."""
        return {}

    def batch_elements_kwargs(self) -> Mapping[str, Any]:
        """Returns keyword arguments for `beam.BatchElements`."""
        return {}

    def validate_inference_args(self, inference_args: Optional[Dict[str, Any]]) -> None:
        """Checks `inference_args` at pipeline construction.

        Raises:
            ValueError: by default whenever `inference_args` is non-empty, because most
                frameworks take no extra arguments.
        """
        if inference_args:
            raise ValueError(
                f"inference_args {sorted(inference_args)} were given, but "
                f"{type(self).__name__} takes no extra inference arguments; remove them or "
                "use a handler whose inference_fn accepts them"
            )

    def update_model_path(self, model_path: Optional[str] = None) -> None:
        """Points the handler at a new model path; the next `load_model` reads it."""

    def update_model_paths(
        self,
        model: ModelT,
        model_paths: Optional[Union[str, List[KeyModelPathMapping]]] = None,
    ) -> None:
        """Points a multi-model handler at new model paths (per-key handlers only)."""

    def get_preprocess_fns(self) -> Iterable[Callable[[Any], Any]]:
        """Returns the functions applied to each element before batching, in order."""
        return []

    def get_postprocess_fns(self) -> Iterable[Callable[[Any], Any]]:
        """Returns the functions applied to each prediction after inference, in order."""
        return []

    def should_skip_batching(self) -> bool:
        """Returns True when the input is already batched (see `with_no_batching`)."""
        return False

    def set_environment_vars(self) -> None:
        """Sets the environment variables given as `env_vars` before the model loads."""
        for name, value in getattr(self, "_env_vars", {}).items():
            os.environ[name] = value

    def share_model_across_processes(self) -> bool:
        """Returns True to keep one copy of the model per machine instead of per process."""
        return False

    def model_copies(self) -> int:
        """Returns how many copies of a model shared across processes to load."""
        return 1

    def override_metrics(self, metrics_namespace: str = "") -> bool:
        """Returns True if the handler reports its own metrics; RunInference then reports none."""
        return False

    def should_garbage_collect_on_timeout(self) -> bool:
        """Returns True if a model whose load or inference timed out is dropped and reloaded."""
        return self.share_model_across_processes()

    def with_preprocess_fn(self, fn: Callable[[Any], ExampleT]) -> "ModelHandler":
        """Returns a handler that applies `fn` to each element before batching.

        Functions added later run first, as in Beam: the last one added sees the raw input.
        """
        return PreProcessing(self, fn)

    def with_postprocess_fn(self, fn: Callable[[PredictionT], Any]) -> "ModelHandler":
        """Returns a handler that applies `fn` to each prediction, after earlier ones."""
        return PostProcessing(self, fn)

    def with_no_batching(self) -> "ModelHandler":
        """Returns a handler whose input elements are already batches (lists of examples)."""
        return NoBatching(self)


def _contract_methods() -> tuple:
    """Public ModelHandler methods a wrapper must forward (all but the with_* builders)."""
    return tuple(
        name
        for name, value in vars(ModelHandler).items()
        if callable(value) and not name.startswith("_") and not name.startswith("with_")
    )


CONTRACT_METHODS = _contract_methods()


class Delegating(ModelHandler):
    """Base for wrappers: each contract method goes to `inner` unless overridden.

    Args:
        inner: The wrapped handler.
    """

    def __init__(self, inner: ModelHandler) -> None:
        self._inner = inner

    @property
    def inner(self) -> ModelHandler:
        """The wrapped handler."""
        return self._inner


def _forwarder(name: str) -> Callable[..., Any]:
    def forward(self: Delegating, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._inner, name)(*args, **kwargs)

    forward.__name__ = name
    forward.__doc__ = getattr(ModelHandler, name).__doc__
    return forward


for _name in CONTRACT_METHODS:
    setattr(Delegating, _name, _forwarder(_name))


class PreProcessing(Delegating):
    """Applies `fn` to each element before the inner handler's own preprocessing."""

    def __init__(self, inner: ModelHandler, fn: Callable[[Any], Any]) -> None:
        super().__init__(inner)
        self._fn = fn

    def get_preprocess_fns(self) -> Iterable[Callable[[Any], Any]]:
        """Returns `fn` followed by the inner handler's preprocessing functions."""
        return [self._fn, *self._inner.get_preprocess_fns()]


class PostProcessing(Delegating):
    """Applies `fn` to each prediction after the inner handler's own postprocessing."""

    def __init__(self, inner: ModelHandler, fn: Callable[[Any], Any]) -> None:
        super().__init__(inner)
        self._fn = fn

    def get_postprocess_fns(self) -> Iterable[Callable[[Any], Any]]:
        """Returns the inner handler's postprocessing functions followed by `fn`."""
        return [*self._inner.get_postprocess_fns(), self._fn]


class NoBatching(Delegating):
    """Takes elements that are already batches; RunInference skips `BatchElements`."""

    def should_skip_batching(self) -> bool:
        """Returns True: each input element is one batch."""
        return True


class KeyModelMapping(Generic[KeyT, ExampleT, PredictionT, ModelT]):
    """Maps one or more keys to the handler that serves them in a `KeyedModelHandler`.

    Args:
        keys: The keys served by `mh`; must not be empty.
        mh: The handler for those keys.
    """

    def __init__(self, keys: List[KeyT], mh: ModelHandler[ExampleT, PredictionT, ModelT]):
        self.keys = keys
        self.mh = mh
