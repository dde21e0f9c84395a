"""Handlers for keyed input: `KeyedModelHandler` and `MaybeKeyedModelHandler`.

Every wrapper derives from `Delegating` (in contract.py, with the pre/post-processing and
no-batching wrappers), which forwards each contract method to the wrapped handler, so a
wrapper only writes what it changes and never drops a method. Per-key models live in
keyed_models.py.
"""

from __future__ import annotations

import pickle
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from liveinference.contract import (
    Delegating,
    KeyModelMapping,
    KeyModelPathMapping,
    ModelHandler,
)
from liveinference.keyed_models import ModelPerKeyGroup

__all__ = [
    "Delegating",
    "KeyedModelHandler",
    "MaybeKeyedModelHandler",
    "OneModelForAllKeys",
]


def _refuse_processing_fns(handler: ModelHandler, wrapper: str) -> None:
    if list(handler.get_preprocess_fns()) or list(handler.get_postprocess_fns()):
        raise ValueError(
            f"{type(handler).__name__} has pre- or postprocessing functions, which a "
            f"{wrapper} cannot apply per key; call with_preprocess_fn/with_postprocess_fn "
            f"on the {wrapper} instead"
        )


def _keyed_bytes(batch: Sequence[Tuple[Any, Any]], inner: ModelHandler) -> int:
    """Returns the bytes of a keyed batch as Beam's KeyedModelHandler counts them: the
    pickled tuple of keys plus `inner`'s count of the examples."""
    keys = tuple(key for key, _ in batch)
    return len(pickle.dumps(keys)) + inner.get_num_bytes([example for _, example in batch])


class OneModelForAllKeys(Delegating):
    """Takes `(key, example)` pairs, runs one model on the examples, keeps the keys.

    Args:
        unkeyed: The handler for the unkeyed examples.
    """

    def run_inference(
        self,
        batch: Sequence[Tuple[Any, Any]],
        model: Any,
        inference_args: Optional[Dict[str, Any]] = None,
    ) -> Iterable[Tuple[Any, Any]]:
        """Runs the model on the examples and pairs each prediction with its key."""
        keys = [key for key, _ in batch]
        predictions = self._inner.run_inference(
            [example for _, example in batch], model, inference_args
        )
        return list(zip(keys, predictions))

    def get_num_bytes(self, batch: Sequence[Tuple[Any, Any]]) -> int:
        """Returns the pickled size of the keys plus the inner handler's count of the
        examples, as Beam's KeyedModelHandler counts."""
        return _keyed_bytes(batch, self._inner)

    def update_model_paths(
        self,
        model: Any,
        model_paths: Optional[Union[str, List[KeyModelPathMapping]]] = None,
    ) -> None:
        """Points the one model at a new path.

        Raises:
            ValueError: if given per-key paths.
        """
        if isinstance(model_paths, list):
            raise ValueError(
                "per-key model paths were given to a KeyedModelHandler with a single "
                "model; give it a list of KeyModelMapping to serve a model per key"
            )
        self._inner.update_model_path(model_paths)


class KeyedModelHandler(Delegating):
    """Takes `(key, example)` pairs and returns `(key, prediction)` pairs.

    Given one handler, every key uses its model (`OneModelForAllKeys`). Given a list of
    `KeyModelMapping`, each key uses the model of the mapping that lists it
    (`ModelPerKeyGroup`): models load on first use and at most
    `max_models_per_worker_hint` stay loaded per worker (least recently used goes first).
    This class only picks one of the two; every method goes to the one it picked.

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
        inner: ModelHandler
        if isinstance(unkeyed, ModelHandler):
            _refuse_processing_fns(unkeyed, "KeyedModelHandler")
            inner = OneModelForAllKeys(unkeyed)
        else:
            mappings = list(unkeyed)
            for mapping in mappings:
                _refuse_processing_fns(mapping.mh, "KeyedModelHandler")
            inner = ModelPerKeyGroup(mappings, max_models_per_worker_hint)
        super().__init__(inner)


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
        """Returns the size of a batch as Beam counts it: for `(key, example)` pairs, the
        pickled keys plus the inner handler's count of the examples."""
        if batch and all(isinstance(element, tuple) and len(element) == 2 for element in batch):
            return _keyed_bytes(batch, self._inner)
        return self._inner.get_num_bytes(batch)

    def get_preprocess_fns(self) -> Iterable[Callable[[Any], Any]]:
        """Returns no functions: they are added on the MaybeKeyedModelHandler itself."""
        return []

    def get_postprocess_fns(self) -> Iterable[Callable[[Any], Any]]:
        """Returns no functions: they are added on the MaybeKeyedModelHandler itself."""
        return []
