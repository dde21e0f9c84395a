"""Beam's module path, `ml.inference.tensorflow_inference`, for a one-word change."""

from liveinference.frameworks.tensorflow import *  # noqa: F401,F403
from liveinference.frameworks.tensorflow import __all__  # noqa: F401
