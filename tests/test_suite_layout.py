"""The test suite's own shape: pytest imports test modules and their helpers by file name."""

from __future__ import annotations

import collections
import pathlib

TESTS = pathlib.Path(__file__).parent


def test_no_two_test_folders_hold_a_module_of_the_same_name():
    """Folders without __init__.py share one module namespace: a second `test_policy.py` or
    `framework_models.py` in another folder fails to import when the whole suite runs."""
    folders = collections.defaultdict(list)
    for path in TESTS.rglob("*.py"):
        if path.name != "conftest.py" and "__pycache__" not in path.parts:
            folders[path.name].append(str(path.parent.relative_to(TESTS)))
    clashes = {name: where for name, where in folders.items() if len(where) > 1}
    assert not clashes, f"rename one of each: {clashes}"
