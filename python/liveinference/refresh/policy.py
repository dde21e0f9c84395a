"""Which offered version to load next: a pure function of what is known, tested without threads.

The policy preserves availability, as TensorFlow Serving's default does: the serving model
keeps serving until a new one has loaded and passed validation, and a version that failed
is not tried again unless it changes (a new fingerprint).
"""

from __future__ import annotations

from typing import AbstractSet, Any, Optional, Tuple

from liveinference.refresh.sources import Version

__all__ = ["version_to_load"]


def version_to_load(
    offered: Optional[Version],
    serving_fingerprint: Optional[Tuple[Any, ...]],
    failed_fingerprints: AbstractSet[Tuple[Any, ...]],
) -> Optional[Version]:
    """Returns the version to load now, or None to keep serving what serves.

    Args:
        offered: What a source offers now.
        serving_fingerprint: The fingerprint of the version serving now (None: the first
            model, which no source offered).
        failed_fingerprints: Versions that failed to load or validate.
    """
    if offered is None:
        return None
    if offered.fingerprint == serving_fingerprint or offered.fingerprint in failed_fingerprints:
        return None
    return offered
