"""Beam's module path, `ml.inference.base`, for a one-word import change.

An import from Beam's `ml.inference.base` module becomes
`from liveinference.base import RunInference`.
"""

from liveinference import *  # noqa: F401,F403
from liveinference import __all__  # noqa: F401
