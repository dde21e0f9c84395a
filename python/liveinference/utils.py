"""Beam's module path, `ml.inference.utils`, for a one-word import change."""

from liveinference.refresh.events import WatchFilePattern

__all__ = ["WatchFilePattern"]
