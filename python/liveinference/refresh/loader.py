"""Loads one offered version off the inference path, into a handler of its own.

A `ModelMetadata` offer loads with a copy of the handler pointed at its path. Per-key
paths (a list of `KeyModelPathMapping`) go to the serving model itself, which must be a
`ModelSet`: it knows how to repoint its keys, so refresh imports no per-key code.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Optional

from liveinference.contract import ModelHandler, ModelMetadata, ModelSet
from liveinference.errors import ModelLoadError
from liveinference.refresh.slot import LoadReport, ServingModel, resident_bytes
from liveinference.refresh.sources import Version
from liveinference.refresh.validate import ModelValidation

__all__ = ["load_version"]


def load_version(
    handler: ModelHandler,
    serving: Optional[ServingModel],
    version: Version,
    validation: Optional[ModelValidation],
) -> "tuple[ServingModel, LoadReport]":
    """Loads and validates `version` with a copy of `handler` pointed at its path.

    The serving handler is never touched, so the batches running meanwhile are unaffected.
    For per-key models, the serving `ModelSet` makes a new set from itself: the listed
    keys get freshly loaded models, the other keys keep theirs.

    Raises:
        ModelLoadError: if the version cannot be loaded.
        ModelValidationError: if it loads but fails validation.
    """
    offer = version.offer
    before = resident_bytes()
    started = time.perf_counter()
    try:
        if isinstance(offer, ModelMetadata):
            candidate = copy.deepcopy(handler)
            candidate.update_model_path(offer.model_id)
            model: Any = candidate.load_model()
            name = offer.model_name
        else:
            current = serving.model if serving is not None else None
            if not isinstance(current, ModelSet):
                raise ModelLoadError(
                    f"per-key model paths {version.model_id!r} need a KeyedModelHandler built "
                    "from KeyModelMappings, serving its first models; send ModelMetadata "
                    "to refresh a single model"
                )
            candidate = handler
            model = current.refreshed(offer)
            name = ""
    except ModelLoadError:
        raise
    except Exception as error:
        raise ModelLoadError(
            f"cannot load model {version.model_id!r}: {type(error).__name__}: {error}"
        ) from error
    if validation is not None:
        validation.run(candidate, model, version.model_id)
    latency_ms = int((time.perf_counter() - started) * 1000)
    report = LoadReport(version.model_id, name, latency_ms, max(0, resident_bytes() - before))
    return ServingModel(version.model_id, model, candidate, name), report
