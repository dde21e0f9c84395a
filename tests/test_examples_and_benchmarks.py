"""The demo and the benchmark scripts run end to end (figures are not asserted: no timed tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python")}
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_demo_accounts_for_every_row():
    out = _run("examples/demo.py")
    assert "elements in: 1000" in out
    assert "predicted 997 + dead-lettered 3 = 1000" in out
    assert "dead letter at preprocess[0]: '1.0,two,3.0,4.0'" in out


def test_throughput_benchmark_runs_onnx_and_xgboost_side_by_side_with_beam(tmp_path):
    out = _run(
        "benchmarks/throughput.py", "--rows", "2000", "--repeats", "1",
        "--frameworks", "onnx,xgboost", "--output-dir", str(tmp_path),
    )
    assert "onnx: liveinference" in out and "xgboost: liveinference" in out
    with open(tmp_path / "throughput.json") as file:
        results = json.load(file)
    for framework in ("onnx", "xgboost"):
        figures = results["frameworks"][framework]
        assert set(figures["rows_per_second"]) == {"liveinference", "beam", "raw"}
        assert figures["rows"] == 2000


def test_throughput_benchmark_writes_its_json_and_plot(tmp_path):
    out = _run(
        "benchmarks/throughput.py", "--rows", "2000", "--repeats", "1",
        "--frameworks", "sklearn", "--output-dir", str(tmp_path),
    )
    assert "liveinference/beam" in out
    with open(tmp_path / "throughput.json") as file:
        results = json.load(file)
    figures = results["frameworks"]["sklearn"]
    assert set(figures["rows_per_second"]) == {"liveinference", "beam", "raw"}
    assert figures["rows"] == 2000
    assert (tmp_path / "throughput.png").stat().st_size > 0
