"""Constructor options every framework handler takes, as Beam's handlers take them."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional

from liveinference.contract import ModelHandler

__all__ = ["HandlerOptions", "OptionsHandler"]

_KNOWN_KWARGS = frozenset({"env_vars"})


@dataclasses.dataclass(frozen=True)
class HandlerOptions:
    """Batching bounds, cross-process sharing and environment variables of a handler.

    Attributes:
        min_batch_size: The smallest batch `BatchElements` makes, if set.
        max_batch_size: The largest batch `BatchElements` makes, if set.
        max_batch_duration_secs: The longest a batch waits to fill, if set.
        share_across_processes: Keep one copy of the model per machine.
        model_copies: How many copies to keep per machine when sharing.
        env_vars: Environment variables set before the model loads.
    """

    min_batch_size: Optional[int] = None
    max_batch_size: Optional[int] = None
    max_batch_duration_secs: Optional[float] = None
    share_across_processes: bool = False
    model_copies: int = 1
    env_vars: Dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(
        cls,
        min_batch_size: Optional[int],
        max_batch_size: Optional[int],
        max_batch_duration_secs: Optional[float],
        large_model: bool,
        model_copies: Optional[int],
        kwargs: Mapping[str, Any],
    ) -> "HandlerOptions":
        """Checks and gathers the options a handler's constructor received.

        Raises:
            TypeError: for a keyword argument no handler takes (a likely typo).
            ValueError: for batch sizes that are not positive or min above max, or
                `model_copies` below 1.
        """
        unknown = sorted(set(kwargs) - _KNOWN_KWARGS)
        if unknown:
            raise TypeError(
                f"unknown handler keyword arguments {unknown}; handlers take "
                f"{sorted(_KNOWN_KWARGS)} besides their named parameters"
            )
        for name, size in (("min_batch_size", min_batch_size), ("max_batch_size", max_batch_size)):
            if size is not None and size < 1:
                raise ValueError(f"{name} must be at least 1, got {size}")
        if min_batch_size and max_batch_size and min_batch_size > max_batch_size:
            raise ValueError(
                f"min_batch_size {min_batch_size} is larger than max_batch_size {max_batch_size}"
            )
        if model_copies is not None and model_copies < 1:
            raise ValueError(f"model_copies must be at least 1, got {model_copies}")
        return cls(
            min_batch_size,
            max_batch_size,
            max_batch_duration_secs,
            large_model or model_copies is not None,
            model_copies or 1,
            dict(kwargs.get("env_vars", {})),
        )

    def batch_elements_kwargs(self) -> Dict[str, Any]:
        """Returns the set batch bounds as `beam.BatchElements` keyword arguments."""
        names = ("min_batch_size", "max_batch_size", "max_batch_duration_secs")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class OptionsHandler(ModelHandler):
    """Base of the framework handlers: batching, sharing and environment come from options.

    A subclass calls `_configure(options)` in its constructor.
    """

    _options: HandlerOptions = HandlerOptions()

    def _configure(self, options: HandlerOptions) -> None:
        self._options = options
        self._env_vars = options.env_vars

    def batch_elements_kwargs(self) -> Dict[str, Any]:
        """Returns the batch size bounds given to the constructor."""
        return self._options.batch_elements_kwargs()

    def share_model_across_processes(self) -> bool:
        """Returns True for `large_model=True` or an explicit `model_copies`."""
        return self._options.share_across_processes

    def model_copies(self) -> int:
        """Returns the number of copies of a model shared across processes."""
        return self._options.model_copies
