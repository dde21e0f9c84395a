"""How a worker process reaches its model: the slot its steps share, and shared copies.

Every step and thread of a worker process with the same model tag gets the same
`ModelSlot` (`SlotAccess`). With `share_model_across_processes()`, the model lives once per
machine in a server process and the workers call it through proxies; `ModelCopies` takes
`model_copies` such copies in turn.
"""

from __future__ import annotations

import functools
import itertools
import types
from typing import Any, Callable, List

from apache_beam.utils import multi_process_shared, shared

from liveinference.contract import ModelHandler
from liveinference.refresh.slot import ModelSlot

__all__ = ["ModelCopies", "SharedModel", "SlotAccess"]

# One registry per worker process: every step and thread with the same model tag gets the
# same ModelSlot, so a model is loaded once per process however many steps serve it.
_SLOTS = shared.Shared()


class ModelCopies:
    """The copies of a model shared across processes (`model_copies=N`), used in turn.

    Args:
        copies: Proxies of the loaded copies.
    """

    def __init__(self, copies: List[Any]) -> None:
        self._copies = copies
        self._turns = itertools.count()

    def pick(self) -> Any:
        """Returns the copy whose turn it is (round-robin across batches)."""
        return self._copies[next(self._turns) % len(self._copies)]


def _materialised(result: Any) -> Any:
    # A generator cannot be pickled back to the calling process: send its items instead.
    return list(result) if isinstance(result, types.GeneratorType) else result


class SharedModel:
    """A model in the machine's model process, whose methods answer with picklable values.

    The workers call the model's methods through a proxy, which pickles each answer back;
    a method (or the model itself, when called) that returns a generator answers with a
    list of its items instead of failing with "cannot pickle 'generator' object". Every
    other answer is returned as it is.

    Args:
        model: The loaded model.
    """

    def __init__(self, model: Any) -> None:
        self._model = model

    def __dir__(self) -> List[str]:
        # The proxy offers the names listed here: the model's, so handlers call them as usual.
        return dir(self._model)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._model, name)
        if not callable(value):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            return _materialised(value(*args, **kwargs))

        return call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the model itself, as a Hugging Face pipeline or a PyTorch module is called."""
        return _materialised(self._model(*args, **kwargs))


def _load_shared(load: Callable[[], Any]) -> SharedModel:
    return SharedModel(load())


class SlotAccess:
    """How the steps of one RunInference reach the ModelSlot of their worker process.

    The inference step and the pre/postprocessing steps acquire the same slot (same tag,
    same loader), so a processing step can name the model serving in its process; only
    the inference step ever loads a model into it.

    Args:
        handler: The handler of the first model.
        model_tag: The key under which worker threads and steps share one slot.
    """

    def __init__(self, handler: ModelHandler, model_tag: str) -> None:
        self._handler = handler
        self._model_tag = model_tag

    def acquire(self) -> ModelSlot:
        """Returns this process's slot for the tag, making an empty one if none exists."""
        return _SLOTS.acquire(self._make_slot, tag=self._model_tag)

    def _make_slot(self) -> ModelSlot:
        return ModelSlot(self._handler, self._load_model)

    def _load_model(self) -> Any:
        handler = self._handler
        if not handler.share_model_across_processes():
            return handler.load_model()
        copies = [
            multi_process_shared.MultiProcessShared(
                functools.partial(_load_shared, handler.load_model),
                tag=f"{self._model_tag}-model-{index}",
                always_proxy=True,
            ).acquire()
            for index in range(max(1, handler.model_copies()))
        ]
        return copies[0] if len(copies) == 1 else ModelCopies(copies)
