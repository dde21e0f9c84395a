"""Exception types RunInference and the framework handlers raise."""

__all__ = ["InvalidExampleError", "ModelLoadError", "PredictionCountError", "UnknownKeyError"]


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
