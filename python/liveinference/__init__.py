"""liveinference: Beam's RunInference, drop-in, with models that can be swapped live.

Change imports from Beam's `ml.inference.base` to `from liveinference import ...`.
"""

from liveinference.composition import KeyedModelHandler, MaybeKeyedModelHandler
from liveinference.contract import (
    KeyModelMapping,
    KeyModelPathMapping,
    ModelHandler,
    ModelMetadata,
    PredictionResult,
)
from liveinference.deadletter import FailureRecord, RunInferenceDLQ
from liveinference.errors import InvalidExampleError, ModelLoadError
from liveinference.refresh.model_versions import (
    ModelMetadataFromMessages,
    WatchFilePattern,
    model_metadata_from_message,
)
from liveinference.refresh.validate import ModelValidation, ModelValidationError
from liveinference.remote import RemoteModelHandler
from liveinference.transform import RunInference

__all__ = [
    "FailureRecord",
    "InvalidExampleError",
    "KeyModelMapping",
    "KeyModelPathMapping",
    "KeyedModelHandler",
    "MaybeKeyedModelHandler",
    "ModelHandler",
    "ModelLoadError",
    "ModelMetadata",
    "ModelMetadataFromMessages",
    "ModelValidation",
    "ModelValidationError",
    "PredictionResult",
    "RemoteModelHandler",
    "RunInference",
    "RunInferenceDLQ",
    "WatchFilePattern",
    "model_metadata_from_message",
]
