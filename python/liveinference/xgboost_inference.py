"""Beam's module path, `ml.inference.xgboost_inference`, for a one-word change."""

from liveinference.frameworks.xgboost import *  # noqa: F401,F403
from liveinference.frameworks.xgboost import __all__  # noqa: F401
