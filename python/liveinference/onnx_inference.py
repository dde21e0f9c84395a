"""Beam's module path, `ml.inference.onnx_inference`, for a one-word change."""

from liveinference.frameworks.onnx import *  # noqa: F401,F403
from liveinference.frameworks.onnx import __all__  # noqa: F401
