"""examples/rollout.py and benchmarks/rollout.py run end to end on Prism (figures are not
asserted: no timed tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRISM = os.environ.get(
    "LIVEINFERENCE_PRISM", os.path.expanduser("~/.cache/liveinference/prism/v2.77.0/prism")
)

pytestmark = pytest.mark.skipif(
    not os.access(PRISM, os.X_OK), reason=f"needs Prism at {PRISM}: run `make prism`"
)


def _run(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python")}
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_rollout_demo_rolls_back_the_worse_model_promotes_the_better_and_loses_no_row():
    summary = json.loads(_run("examples/rollout.py").splitlines()[-1])
    assert summary["rows_in"] == summary["rows_out"] + summary["dead_letters"]
    assert summary["rolled_back"] == ["v2.pkl"] and summary["promoted"] == ["v3.pkl"]
    assert summary["predictions"]["v2.pkl/canary"] == summary["rows_before_rollback"] > 0
    assert sum(summary["predictions"].values()) == summary["rows_out"]
    assert "accuracy" in summary["rollback_reason"]


def test_rollout_benchmark_writes_its_json_and_plot_and_loses_no_row(tmp_path):
    out = _run(
        "benchmarks/rollout.py", "--shares", "0.25", "--windows", "40", "--repeats", "1",
        "--rows-per-second", "100", "--output-dir", str(tmp_path),
    )
    assert "no row lost: True (1 runs)" in out
    with open(tmp_path / "rollout.json") as file:
        results = json.load(file)
    (cell,) = results["cells"]
    assert (cell["canary_share"], cell["min_predictions"]) == (0.25, 40)
    (run,) = cell["runs"]
    assert run["rolled_back"] == ["v2.pkl"] and run["promoted"] == ["v3.pkl"]
    assert cell["rows_before_rollback"]["median"] == run["rows_before_rollback"] > 0
    assert (tmp_path / "rollout.png").stat().st_size > 0
