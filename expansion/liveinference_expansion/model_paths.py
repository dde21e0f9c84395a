"""Which model paths the expansion service looks at: only those under the operator's roots.

A check like "no model file at /etc/x" answered to any client tells it whether a path exists
on the service's machine, and with the service's permissions. So the service checks a local
model path when the pipeline is built only if the path lies inside a directory the operator
named for models (`liveinference serve --model-root DIR`, repeatable): there a missing file
fails the request early, with its name. Anywhere else (and for remote URLs) the service says
nothing about the path, and the Python workers find out when they load it: the load failure
goes to the dead letters (or fails the pipeline without exception handling), as for a model
that disappears after the pipeline was built.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional, Sequence, Tuple

__all__ = ["check_model_path", "model_root_of", "model_roots"]


def model_roots(directories: Iterable[str]) -> Tuple[str, ...]:
    """Resolves the operator's model roots (symbolic links and `..` followed).

    Args:
        directories: The directories given with `--model-root`.

    Returns:
        Their real paths, each once, in the order given.

    Raises:
        NotADirectoryError: for a root that is not an existing directory.
    """
    roots = []
    for directory in directories:
        real = os.path.realpath(directory)
        if not os.path.isdir(real):
            raise NotADirectoryError(
                f"model root {directory!r} is not a directory; give --model-root a folder that "
                "holds the models clients may name"
            )
        roots.append(real)
    return tuple(dict.fromkeys(roots))


def model_root_of(path: str, roots: Sequence[str]) -> Optional[str]:
    """Returns the root (from `model_roots`) that holds `path` once resolved, else None."""
    real = os.path.realpath(path)
    for root in roots:
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return root
    return None


def check_model_path(path: str, what: str, roots: Sequence[str]) -> None:
    """Fails early for a missing model file inside a model root; says nothing about others.

    Args:
        path: A model path a request names (a local path or a URL).
        what: Which argument names it, for the message ("handler 'sklearn_numpy' argument
            'model_uri'").
        roots: The operator's model roots, from `model_roots`; empty: check nothing.

    Raises:
        FileNotFoundError: if `path` resolves inside a root and does not exist there.
    """
    if "://" in path:
        return  # a remote filesystem: the workers find out when they load it
    root = model_root_of(path, roots)
    if root is not None and not os.path.exists(path):
        raise FileNotFoundError(
            f"{what}: no model file at {path!r} (in model root {root!r}); give the path of a "
            "model file in that folder"
        )
