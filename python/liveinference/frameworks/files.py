"""Open a model file on any Beam filesystem, with an error that names the path."""

from __future__ import annotations

from typing import IO

from apache_beam.io.filesystems import FileSystems

from liveinference.errors import ModelLoadError

__all__ = ["open_model_file"]


def open_model_file(path: str) -> IO[bytes]:
    """Opens `path` for reading bytes, locally or on any filesystem Beam knows.

    Raises:
        ModelLoadError: if the file does not exist or cannot be opened.
    """
    try:
        if not FileSystems.exists(path):
            raise ModelLoadError(
                f"model file {path!r} does not exist; check the path, or that the workers "
                "can see it (a local path must exist on every worker)"
            )
        return FileSystems.open(path)
    except ModelLoadError:
        raise
    except Exception as error:
        raise ModelLoadError(f"cannot open model file {path!r}: {error}") from error
