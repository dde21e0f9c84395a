"""Beam's module path, `ml.inference.pytorch_inference`, for a one-word change."""

from liveinference.frameworks.pytorch import *  # noqa: F401,F403
from liveinference.frameworks.pytorch import __all__  # noqa: F401
