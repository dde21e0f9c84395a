"""Per-key models for `KeyedModelHandler`: load on first use, keep at most N, evict the LRU.

`ModelPerKeyGroup` is the handler; the model it loads is a `KeyedModels`, a `ModelSet`:
RunInference asks it which model serves a key, and refresh asks it for a copy with some
keys repointed, so neither imports this module.

Loads and evictions are counted as Beam metrics, `num_model_loads` and
`num_model_evictions`, under the keyed handler's namespace (`BeamML_KeyedModels` unless
RunInference is given another). Beam records metrics only on the thread processing a
bundle, so those made while a refresh loads models in the background are not reported.
"""

from __future__ import annotations

import collections
import copy
import logging
import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from apache_beam.metrics import Metrics

from liveinference.contract import Delegating, KeyModelMapping, KeyModelPathMapping, ModelHandler
from liveinference.errors import UnknownKeyError

__all__ = ["KeyedModels", "ModelPerKeyGroup"]

_LOG = logging.getLogger(__name__)


class KeyedModels:
    """The models of a per-key `KeyedModelHandler`, loaded lazily and bounded in number.

    Thread-safe: one instance is shared by all threads of a worker process.

    Args:
        mappings: Which handler serves which keys.
        max_models: The most models kept loaded at once; None keeps every model.
        namespace: The metrics namespace of the load and eviction counters.

    Attributes:
        loads: How many models this set has loaded.
        evictions: How many models it has dropped to stay within `max_models`.

    Raises:
        ValueError: if `max_models` is given and is less than 1.
    """

    def __init__(
        self,
        mappings: Sequence[KeyModelMapping],
        max_models: Optional[int],
        namespace: str = "BeamML_KeyedModels",
    ) -> None:
        if max_models is not None and max_models < 1:
            raise ValueError(f"max_models_per_worker_hint must be at least 1, got {max_models}")
        self._handlers = [mapping.mh for mapping in mappings]
        self._index_of_key: Dict[Any, int] = {
            key: index for index, mapping in enumerate(mappings) for key in mapping.keys
        }
        self._max_models = max_models
        self._loaded: "collections.OrderedDict[int, Any]" = collections.OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0
        self.evictions = 0
        self._load_counter = Metrics.counter(namespace, "num_model_loads")
        self._eviction_counter = Metrics.counter(namespace, "num_model_evictions")

    def _index(self, key: Any) -> int:
        try:
            return self._index_of_key[key]
        except KeyError:
            known = ", ".join(sorted(map(repr, self._index_of_key)))
            raise UnknownKeyError(
                f"no KeyModelMapping covers key {key!r}; known keys: {known}"
            ) from None

    def _model(self, index: int) -> Any:
        with self._lock:
            if index in self._loaded:
                self._loaded.move_to_end(index)
                return self._loaded[index]
            started = time.perf_counter()
            model = self._handlers[index].load_model()
            self.loads += 1
            self._load_counter.inc()
            _LOG.info(
                "loaded the model of KeyModelMapping #%d in %d ms",
                index, (time.perf_counter() - started) * 1000,
            )
            self._loaded[index] = model
            while self._max_models is not None and len(self._loaded) > self._max_models:
                evicted, _ = self._loaded.popitem(last=False)
                self.evictions += 1
                self._eviction_counter.inc()
                _LOG.info("evicted the model of KeyModelMapping #%d", evicted)
            return model

    def model_id_for(self, key: Any) -> str:
        """Returns the id of the model serving `key`: its handler's `get_model_id()`.

        As in Beam, a `KeyModelPathMapping`'s own model_id labels metrics, not predictions.

        Raises:
            UnknownKeyError: if no mapping covers `key`.
        """
        return self._handlers[self._index(key)].get_model_id()

    def run_inference(
        self, batch: Sequence[Tuple[Any, Any]], inference_args: Optional[Dict[str, Any]]
    ) -> List[Tuple[Any, Any]]:
        """Runs each key's model on that key's examples; returns `(key, prediction)` pairs.

        As Beam does, the model runs once per key, and every prediction it returns is
        paired with that key, however many it returns: a handler that returns fewer
        predictions than examples drops some, one that returns more adds some. Keys come
        in the order they first appear in the batch.

        Raises:
            UnknownKeyError: if no mapping covers a key.
        """
        examples_of: Dict[Any, List[Any]] = {}
        for key, example in batch:
            examples_of.setdefault(key, []).append(example)
        results: List[Tuple[Any, Any]] = []
        for key, examples in examples_of.items():
            index = self._index(key)
            predictions = self._handlers[index].run_inference(
                examples, self._model(index), inference_args
            )
            results.extend((key, prediction) for prediction in predictions)
        return results

    def refreshed(self, updates: Sequence[KeyModelPathMapping]) -> "KeyedModels":
        """Returns a new model set in which the listed keys serve the models at new paths.

        The new models are loaded here, off the inference path; keys not listed keep the
        models already loaded. A key's whole mapping moves to the new path. This set is
        not changed, so batches running on it finish on the old models.

        Raises:
            UnknownKeyError: if no mapping covers one of the keys.
            Exception: whatever loading a new model raises.
        """
        new = copy.copy(self)
        new._handlers = list(self._handlers)
        with self._lock:
            new._loaded = collections.OrderedDict(self._loaded)
        new._lock = threading.Lock()
        for update in updates:
            for index in sorted({self._index(key) for key in update.keys}):
                handler = copy.deepcopy(self._handlers[index])
                handler.update_model_path(update.update_path)
                new._handlers[index] = handler
                new._loaded.pop(index, None)
                new._model(index)
        return new

    def update_paths(self, model_paths: Sequence[KeyModelPathMapping]) -> None:
        """Points the handlers of the given keys at new paths; they reload on next use.

        Raises:
            UnknownKeyError: if no mapping covers one of the keys.
        """
        for update in model_paths:
            for index in {self._index(key) for key in update.keys}:
                self._handlers[index].update_model_path(update.update_path)
                with self._lock:
                    self._loaded.pop(index, None)


class ModelPerKeyGroup(Delegating):
    """Takes `(key, example)` pairs; each key is served by the model of its mapping.

    Its model is a `KeyedModels`. Contract methods it does not override (sharing,
    environment variables, inference-args checks) go to the first mapping's handler.

    Args:
        mappings: Which handler serves which keys.
        max_models: The most models kept loaded at once; None keeps every model.

    Raises:
        ValueError: if there are no mappings, a mapping has no keys, or a key appears in
            two mappings.
    """

    def __init__(self, mappings: Sequence[KeyModelMapping], max_models: Optional[int]) -> None:
        if not mappings:
            raise ValueError("KeyedModelHandler needs a handler or at least one KeyModelMapping")
        seen: Dict[Any, int] = {}
        for index, mapping in enumerate(mappings):
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
        self._mappings = list(mappings)
        self._max_models = max_models
        self._namespace = self.get_metrics_namespace()

    def load_model(self) -> KeyedModels:
        """Returns a per-key model set that loads each model on first use."""
        return KeyedModels(self._mappings, self._max_models, self._namespace)

    def run_inference(
        self,
        batch: Sequence[Tuple[Any, Any]],
        model: Any,
        inference_args: Optional[Dict[str, Any]] = None,
    ) -> Iterable[Tuple[Any, Any]]:
        """Runs the model of each key on its examples and pairs each prediction with its key.

        Raises:
            UnknownKeyError: if no mapping lists an element's key.
        """
        return model.run_inference(batch, inference_args)

    def get_model_id(self) -> str:
        """Returns the ids of the mappings' models, e.g. "KeyedModels[a.pkl, b.pkl]"."""
        return f"KeyedModels[{', '.join(mapping.mh.get_model_id() for mapping in self._mappings)}]"

    def get_num_bytes(self, batch: Sequence[Tuple[Any, Any]]) -> int:
        """Returns the pickled size of the examples in a batch, keys not counted."""
        return ModelHandler.get_num_bytes(self, [example for _, example in batch])

    def get_metrics_namespace(self) -> str:
        """Returns `BeamML_KeyedModels`."""
        return "BeamML_KeyedModels"

    def override_metrics(self, metrics_namespace: str = "") -> bool:
        """Notes the namespace for the per-key load and eviction counters.

        Returns:
            False, so RunInference still reports its metrics.
        """
        self._namespace = metrics_namespace or self._namespace
        return False

    def batch_elements_kwargs(self) -> Dict[str, Any]:
        """Returns no batching arguments: the mappings' handlers may disagree."""
        return {}

    def update_model_paths(
        self,
        model: Any,
        model_paths: Optional[Union[str, List[KeyModelPathMapping]]] = None,
    ) -> None:
        """Points the handlers of the listed keys at new paths; they reload on next use.

        Raises:
            UnknownKeyError: if no mapping covers one of the keys.
        """
        if model_paths:
            model.update_paths(model_paths)
