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


def test_demo_swaps_models_rejects_the_corrupt_one_and_accounts_for_every_row():
    out = _run("examples/demo.py", "--seconds", "10")
    lines = out.splitlines()
    swaps = [line.split()[-1] for line in lines if "now serving" in line]
    assert swaps == ["classifier-v1.pkl", "classifier-v2.pkl", "classifier-v3.pkl"]
    assert any("rejected model classifier-corrupt.pkl at load_model" in line for line in lines)
    assert "predicted + dead-lettered = 200 of 200 in" in out
    assert "  dead-lettered:  5" in out
    assert not any("by classifier-corrupt.pkl" in line for line in lines)


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
