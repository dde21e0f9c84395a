"""Beam's handler constructor parameters as of Beam 2.77, whichever Beam is installed.

Beam 2.77 added four batching parameters, just before `**kwargs`, to every handler
constructor; liveinference takes them on any Beam. Signature tests compare ours with the
installed Beam's, brought up to 2.77 by these helpers.
"""

from __future__ import annotations

import inspect
from typing import Any, List, Sequence, Tuple

BATCHING_2_77 = (
    "max_batch_weight", "element_size_fn", "batch_length_fn", "batch_bucket_boundaries"
)


def names_as_of_2_77(names: Sequence[str]) -> List[str]:
    """Parameter names with 2.77's batching ones before a trailing `kwargs`, if missing."""
    names = list(names)
    if BATCHING_2_77[0] in names:
        return names
    at = len(names) - 1 if names and names[-1].lstrip("*") == "kwargs" else len(names)
    return names[:at] + list(BATCHING_2_77) + names[at:]


def kinds_as_of_2_77(parameters: Sequence[inspect.Parameter]) -> List[Tuple[str, Any]]:
    """(name, kind) pairs of a signature, with 2.77's batching ones (keyword-only) added."""
    pairs = [(p.name, p.kind) for p in parameters]
    names = names_as_of_2_77([name for name, _ in pairs])
    kinds = dict(pairs)
    return [(name, kinds.get(name, inspect.Parameter.KEYWORD_ONLY)) for name in names]
