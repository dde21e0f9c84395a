"""Which elements the canary serves: a stable hash of the element, or of its key.

The same element (or key) goes to the same role on every worker and in every run with the
same seed, so a keyed stream is sticky per key and a replayed element meets the same model.
"""

from __future__ import annotations

import hashlib
import pickle
from typing import Any, List, Sequence, Tuple

import numpy

from liveinference.settings import checked_number

__all__ = ["Router"]

_SCALE = float(2**64)


class Router:
    """Sends a fixed share of elements to the canary by a seeded hash.

    A `(key, value)` pair is routed by its key (sticky per key); any other element by its
    own value: bytes and strings as they are, NumPy arrays by dtype, shape and data, other
    values by their pickle.

    Args:
        share: The share of elements (or keys) the canary serves, in (0, 1].
        seed: Changes which elements fall in the share.

    Raises:
        TypeError, ValueError: if `share` is not a number in (0, 1].
    """

    def __init__(self, share: float, seed: int = 0) -> None:
        self.share = checked_number("canary_share", share, unit="", at_most=1)
        self._threshold = self.share * _SCALE
        self._salt = int(seed).to_bytes(8, "big", signed=True)

    def is_canary(self, element: Any) -> bool:
        """Returns True if the canary serves `element`."""
        if isinstance(element, tuple) and len(element) == 2:
            element = element[0]
        digest = hashlib.blake2b(_as_bytes(element), digest_size=8, salt=self._salt).digest()
        return int.from_bytes(digest, "big") < self._threshold

    def split(self, batch: Sequence[Any]) -> Tuple[List[int], List[int]]:
        """Returns the positions in `batch` the stable model serves, and the canary's."""
        stable: List[int] = []
        canary: List[int] = []
        for index, element in enumerate(batch):
            (canary if self.is_canary(element) else stable).append(index)
        return stable, canary


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, numpy.ndarray):
        return f"{value.dtype.str}{value.shape}".encode() + value.tobytes()
    return pickle.dumps(value, protocol=4)
