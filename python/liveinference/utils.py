"""Beam's module path, `ml.inference.utils`, for a one-word import change."""

from liveinference.refresh.model_versions import WatchFilePattern

__all__ = ["WatchFilePattern"]
