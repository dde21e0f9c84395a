"""Beam's module path, `apache_beam.ml.inference.base`, for a one-word import change.

`from apache_beam.ml.inference.base import RunInference` becomes
`from liveinference.base import RunInference`.
"""

from liveinference import *  # noqa: F401,F403
from liveinference import __all__  # noqa: F401
