"""Checks a loaded candidate model must pass before it may serve."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

from liveinference.contract import ModelHandler

__all__ = ["ModelValidation", "ModelValidationError"]


class ModelValidationError(ValueError):
    """A candidate model failed validation: the message says which check and why."""


@dataclasses.dataclass(frozen=True)
class ModelValidation:
    """What a new model version must pass before it replaces the serving one.

    Attributes:
        canary_examples: Examples the candidate must run on without raising, returning
            one prediction each.
        check: `check(predictions, model)` called with the canary predictions (an empty
            list when there are no canaries); returning a false value other than None, or
            raising, rejects the model.
    """

    canary_examples: Sequence[Any] = ()
    check: Optional[Callable[[list, Any], Any]] = None

    def run(self, handler: ModelHandler, model: Any, model_id: str) -> None:
        """Validates a loaded candidate.

        Raises:
            ModelValidationError: naming the model and the failed check.
        """
        predictions: list = []
        if self.canary_examples:
            try:
                predictions = list(handler.run_inference(list(self.canary_examples), model))
            except Exception as error:
                raise ModelValidationError(
                    f"model {model_id!r} failed on its canary examples: "
                    f"{type(error).__name__}: {error}"
                ) from error
            if len(predictions) != len(self.canary_examples):
                raise ModelValidationError(
                    f"model {model_id!r} returned {len(predictions)} predictions for "
                    f"{len(self.canary_examples)} canary examples"
                )
        if self.check is None:
            return
        try:
            verdict = self.check(predictions, model)
        except Exception as error:
            raise ModelValidationError(
                f"model {model_id!r} was rejected by the validation check: "
                f"{type(error).__name__}: {error}"
            ) from error
        if verdict is not None and not verdict:
            raise ModelValidationError(
                f"model {model_id!r} was rejected by the validation check (it returned "
                f"{verdict!r})"
            )
