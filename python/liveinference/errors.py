"""Exception types RunInference and the framework handlers raise, and the mark of an error
that is about a whole batch rather than any of its examples."""

from typing import TypeVar

__all__ = [
    "InvalidExampleError",
    "ModelLoadError",
    "PredictionCountError",
    "UnknownKeyError",
    "is_whole_batch_failure",
    "mark_whole_batch_failure",
]

ErrorT = TypeVar("ErrorT", bound=BaseException)

# The attribute that marks an error; it travels with the error when the error is pickled.
_WHOLE_BATCH = "liveinference_whole_batch_failure"


class ModelLoadError(RuntimeError):
    """A model could not be loaded: the message names the model and the cause."""


class InvalidExampleError(ValueError):
    """Examples do not fit the model: the message names the shape or type expected and seen."""


class UnknownKeyError(KeyError):
    """An element's key is served by no model: the message names the key and the known keys."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PredictionCountError(ValueError):
    """An inference function returned fewer predictions than examples: the message names
    both counts and the model. Dead letters of the examples left without a prediction
    carry it."""


def mark_whole_batch_failure(error: ErrorT) -> ErrorT:
    """Marks `error` as a failure of its whole batch, not of any example in it.

    RunInference with exception handling then dead-letters every example of the batch at
    once, instead of splitting the batch to find the examples that fail on their own (which
    would only call a server that is down again and again). The error keeps its type, so
    `with_exception_handling(exc_class=...)` selects it as before. Raise a marked error when
    a retry would fail the same way for any part of the batch: a model server that does not
    answer, a device that is gone.

    Args:
        error: The exception about to be raised.

    Returns:
        The same exception, marked.
    """
    setattr(error, _WHOLE_BATCH, True)
    return error


def is_whole_batch_failure(error: BaseException) -> bool:
    """Tells whether `error` was marked by `mark_whole_batch_failure`.

    Args:
        error: An exception a handler raised.

    Returns:
        True when the error is about the whole batch, not about any of its examples.
    """
    return getattr(error, _WHOLE_BATCH, False) is True
