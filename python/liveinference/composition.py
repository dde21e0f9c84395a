"""Handlers built from other handlers: pre/post-processing, pre-batched input, keys.

Every wrapper derives from `Delegating`, which forwards each contract method to the
wrapped handler, so a wrapper only writes what it changes and never drops a method.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from liveinference.contract import (
    CONTRACT_METHODS,
    KeyModelMapping,
    KeyModelPathMapping,
    ModelHandler,
)
from liveinference.keyed_models import KeyedModels

__all__ = [
    "Delegating",
    "KeyedModelHandler",
    "MaybeKeyedModelHandler",
    "NoBatching",
    "PostProcessing",
    "PreProcessing",
]


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


def _refuse_processing_fns(handler: ModelHandler, wrapper: str) -> None:
    if list(handler.get_preprocess_fns()) or list(handler.get_postprocess_fns()):
        raise ValueError(
            f"{type(handler).__name__} has pre- or postprocessing functions, which a "
            f"{wrapper} cannot apply per key; call with_preprocess_fn/with_postprocess_fn "
            f"on the {wrapper} instead"
        )


class KeyedModelHandler(Delegating):
    """Takes `(key, example)` pairs and returns `(key, prediction)` pairs.

    Given one handler, every key uses its model. Given a list of `KeyModelMapping`, each
    key uses the model of the mapping that lists it; models load on first use and at most
    `max_models_per_worker_hint` stay loaded per worker (least recently used goes first).

    Args:
        unkeyed: A handler for unkeyed examples, or a list of `KeyModelMapping`.
        max_models_per_worker_hint: The most per-key models to keep loaded at once.

    Raises:
        ValueError: if a wrapped handler has pre/post-processing functions, a mapping has
            no keys, or a key appears in two mappings.
    """

    def __init__(
        self,
        unkeyed: Union[ModelHandler, List[KeyModelMapping]],
        max_models_per_worker_hint: Optional[int] = None,
    ) -> None:
        self._mappings: Optional[List[KeyModelMapping]] = None
        if isinstance(unkeyed, ModelHandler):
            _refuse_processing_fns(unkeyed, "KeyedModelHandler")
            super().__init__(unkeyed)
            return
        mappings = list(unkeyed)
        if not mappings:
            raise ValueError("KeyedModelHandler needs a handler or at least one KeyModelMapping")
        seen: Dict[Any, int] = {}
        for index, mapping in enumerate(mappings):
            _refuse_processing_fns(mapping.mh, "KeyedModelHandler")
            if not mapping.keys:
                raise ValueError(f"KeyModelMapping #{index} has no keys; give it at least one")
            for key in mapping.keys:
                if key in seen:
                    raise ValueError(
                        f"key {key!r} is in KeyModelMapping #{seen[key]} and #{index}; "
                        "each key must map to exactly one handler"
                    )
                seen[key] = index
        super().__init__(mappings[0].mh)
        self._mappings = mappings
        self._max_models = max_models_per_worker_hint
        self._namespace = self.get_metrics_namespace()

    def load_model(self) -> Any:
        """Loads the single model, or returns a per-key model cache that loads on demand."""
        if self._mappings is None:
            return self._inner.load_model()
        return KeyedModels(self._mappings, self._max_models, self._namespace)

    def run_inference(
        self,
        batch: Sequence[Tuple[Any, Any]],
        model: Any,
        inference_args: Optional[Dict[str, Any]] = None,
    ) -> Iterable[Tuple[Any, Any]]:
        """Runs the model of each key on its examples and pairs each prediction with its key.

        Raises:
            KeyError: if no mapping lists an element's key.
        """
        if self._mappings is None:
            keys = [key for key, _ in batch]
            predictions = self._inner.run_inference(
                [example for _, example in batch], model, inference_args
            )
            return list(zip(keys, predictions))
        return model.run_inference(batch, inference_args)

    def get_num_bytes(self, batch: Sequence[Tuple[Any, Any]]) -> int:
        """Returns the size of the examples in a batch, keys not counted."""
        examples = [example for _, example in batch]
        if self._mappings is None:
            return self._inner.get_num_bytes(examples)
        return ModelHandler.get_num_bytes(self, examples)

    def get_metrics_namespace(self) -> str:
        """Returns the inner handler's namespace, or `BeamML_KeyedModels` for per-key models."""
        if self._mappings is None:
            return self._inner.get_metrics_namespace()
        return "BeamML_KeyedModels"

    def override_metrics(self, metrics_namespace: str = "") -> bool:
        """Notes the namespace for the per-key load and eviction counters.

        Returns:
            False for per-key models, so RunInference still reports its metrics; the
            inner handler's answer for a single model.
        """
        if self._mappings is None:
            return self._inner.override_metrics(metrics_namespace)
        self._namespace = metrics_namespace or self._namespace
        return False

    def batch_elements_kwargs(self) -> Dict[str, Any]:
        """Returns the inner handler's batching arguments (none for per-key models)."""
        if self._mappings is None:
            return dict(self._inner.batch_elements_kwargs())
        return {}

    def update_model_paths(
        self,
        model: Any,
        model_paths: Optional[Union[str, List[KeyModelPathMapping]]] = None,
    ) -> None:
        """Points the handlers of the listed keys at new paths (per-key models only).

        Raises:
            ValueError: if given per-key paths while serving a single model.
        """
        if self._mappings is None:
            if isinstance(model_paths, list):
                raise ValueError(
                    "per-key model paths were given to a KeyedModelHandler with a single "
                    "model; give it a list of KeyModelMapping to serve a model per key"
                )
            self._inner.update_model_path(model_paths)
            return
        if model_paths:
            model.update_paths(model_paths)

    def get_preprocess_fns(self) -> Iterable[Callable[[Any], Any]]:
        """Returns no functions: a keyed handler's functions are added on the keyed handler."""
        return []

    def get_postprocess_fns(self) -> Iterable[Callable[[Any], Any]]:
        """Returns no functions: a keyed handler's functions are added on the keyed handler."""
        return []


class MaybeKeyedModelHandler(Delegating):
    """Takes examples that are either all keyed `(key, example)` or all unkeyed.

    Keyed input gives keyed predictions; unkeyed input gives plain predictions. Examples
    must not themselves be tuples.

    Raises:
        ValueError: if the wrapped handler has pre/post-processing functions.
    """

    def __init__(self, unkeyed: ModelHandler) -> None:
        _refuse_processing_fns(unkeyed, "MaybeKeyedModelHandler")
        super().__init__(unkeyed)

    def run_inference(
        self,
        batch: Sequence[Any],
        model: Any,
        inference_args: Optional[Dict[str, Any]] = None,
    ) -> Iterable[Any]:
        """Runs the model, keeping keys where the examples came keyed.

        Raises:
            ValueError: if a batch mixes keyed and unkeyed examples.
        """
        keyed = [isinstance(element, tuple) and len(element) == 2 for element in batch]
        if all(keyed):
            keys = [key for key, _ in batch]
            predictions = self._inner.run_inference(
                [example for _, example in batch], model, inference_args
            )
            return list(zip(keys, predictions))
        if any(keyed):
            raise ValueError(
                "a batch mixes keyed (key, example) pairs and unkeyed examples; "
                "MaybeKeyedModelHandler needs all of one kind"
            )
        return self._inner.run_inference(batch, model, inference_args)

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        """Returns the size of the examples in a batch, keys not counted."""
        if batch and all(isinstance(element, tuple) and len(element) == 2 for element in batch):
            return self._inner.get_num_bytes([example for _, example in batch])
        return self._inner.get_num_bytes(batch)

    def get_preprocess_fns(self) -> Iterable[Callable[[Any], Any]]:
        """Returns no functions: they are added on the MaybeKeyedModelHandler itself."""
        return []

    def get_postprocess_fns(self) -> Iterable[Callable[[Any], Any]]:
        """Returns no functions: they are added on the MaybeKeyedModelHandler itself."""
        return []
