"""benchmarks/batched.py runs end to end and writes its JSON and chart (figures are not
asserted: no timed tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_batched_benchmark_writes_every_mode_with_its_peak_rss(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python")}
    done = subprocess.run(
        [sys.executable, "benchmarks/batched.py", "--rows", "2000", "--per-row-rows", "500",
         "--large-rows", "4000", "--repeats", "1", "--frameworks", "sklearn",
         "--output-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "batched.json") as file:
        results = json.load(file)
    figures = results["frameworks"]["sklearn"]
    modes = {"batched", "per_row", "beam", "raw"}
    assert modes <= set(figures) and set(figures["peak_rss_mb"]) == modes
    assert all(figures[mode] > 0 and figures["peak_rss_mb"][mode] > 0 for mode in modes)
    assert figures["rows"] == {"batched": 2000, "raw": 2000, "per_row": 500, "beam": 500}
    flat = figures["flat_rss"]
    assert flat["rows"] == [2000, 4000] and all(mb > 0 for mb in flat["batched_peak_rss_mb"])
    assert (tmp_path / "batched.png").stat().st_size > 0
