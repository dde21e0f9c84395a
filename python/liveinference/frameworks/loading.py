"""What every framework's loader shares: opening a model file, and wrapping a failed step.

A loader reads as the steps of loading one framework's model; each step that can fail runs
under `load_step`, which turns its error into a `ModelLoadError` that names the model, the
cause and what to do next.
"""

from __future__ import annotations

from types import TracebackType
from typing import IO, Callable, Optional, Type, Union

from apache_beam.io.filesystems import FileSystems

from liveinference.errors import ModelLoadError

__all__ = ["load_step", "open_model_file"]


def open_model_file(path: str) -> IO[bytes]:
    """Opens `path` for reading bytes, locally or on any filesystem Beam knows.

    Raises:
        ModelLoadError: if the file does not exist or cannot be opened.
    """
    with load_step(f"cannot open model file {path!r}", "check that the workers can read it"):
        if not FileSystems.exists(path):
            raise ModelLoadError(
                f"model file {path!r} does not exist; check the path, or that the workers "
                "can see it (a local path must exist on every worker)"
            )
        return FileSystems.open(path)


def load_step(failure: str, hint: Union[str, Callable[[], str]]) -> "_LoadStep":
    """Returns a context manager that turns an error in a step of loading into a ModelLoadError.

    `with load_step("cannot read 'm.pt' as a state dict", "save one with torch.save"):`
    raises `ModelLoadError("cannot read 'm.pt' as a state dict (EOFError: ...); save one
    with torch.save")` from any `Exception` in the block. A `ModelLoadError` passes
    unchanged.

    Args:
        failure: What could not be done, naming the model.
        hint: What to do about it, or a function that works that out once the step
            has failed (e.g. by looking at the file).

    Returns:
        The context manager.
    """
    return _LoadStep(failure, hint)


class _LoadStep:
    """The context manager `load_step` returns."""

    def __init__(self, failure: str, hint: Union[str, Callable[[], str]]) -> None:
        self._failure = failure
        self._hint = hint

    def __enter__(self) -> None:
        pass

    def __exit__(
        self,
        kind: Optional[Type[BaseException]],
        error: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        if isinstance(error, Exception) and not isinstance(error, ModelLoadError):
            hint = self._hint if isinstance(self._hint, str) else self._hint()
            raise ModelLoadError(
                f"{self._failure} ({type(error).__name__}: {error}); {hint}"
            ) from error
