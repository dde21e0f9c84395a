"""Beam's module path, `ml.inference.huggingface_inference`, for a one-word change."""

from liveinference.frameworks.huggingface import *  # noqa: F401,F403
from liveinference.frameworks.huggingface import __all__  # noqa: F401
