"""Beam's module path, `ml.inference.sklearn_inference`, for a one-word change."""

from liveinference.frameworks.sklearn import *  # noqa: F401,F403
from liveinference.frameworks.sklearn import __all__  # noqa: F401
