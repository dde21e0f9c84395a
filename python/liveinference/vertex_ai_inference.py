"""Beam's module path, `ml.inference.vertex_ai_inference`, for a one-word change."""

from liveinference.frameworks.vertex_ai import *  # noqa: F401,F403
from liveinference.frameworks.vertex_ai import __all__  # noqa: F401
