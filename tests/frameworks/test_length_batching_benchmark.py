"""The length-batching benchmark runs end to end (its timings are not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_length_bucketed_batches_pad_less_than_count_based_ones(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python")}
    done = subprocess.run(
        [sys.executable, "benchmarks/length_batching.py", "--examples", "300", "--repeats", "1",
         "--output-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "length_batching.json") as file:
        results = json.load(file)
    count, bucketed = results["count_based"], results["length_bucketed"]
    assert bucketed["padded_tokens"]["median"] < count["padded_tokens"]["median"] / 2
    assert len(count["examples_per_second"]["runs"]) == 1
    assert (tmp_path / "length_batching.png").stat().st_size > 0
