"""Exception types RunInference and the framework handlers raise."""

__all__ = ["InvalidExampleError", "ModelLoadError"]


class ModelLoadError(RuntimeError):
    """A model could not be loaded: the message names the model and the cause."""


class InvalidExampleError(ValueError):
    """Examples do not fit the model: the message names the shape or type expected and seen."""
