"""Fixtures for refresh tests."""

from __future__ import annotations

import pytest

from refresh_models import write_model


@pytest.fixture
def model_dir(tmp_path):
    """A folder holding model v1.pkl (predicts 1) and an empty 'watched' subfolder."""
    write_model(str(tmp_path / "v1.pkl"), 1)
    (tmp_path / "watched").mkdir()
    return tmp_path
