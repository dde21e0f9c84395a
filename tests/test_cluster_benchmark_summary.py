"""benchmarks/cluster.py's summary of repeated runs: medians, spreads and each run kept."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "cluster.py"


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmark_cluster", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(skew: float, lost: int, latency: dict) -> dict:
    return {"taskmanagers": 2, "rows_in": 600, "lost": lost, "skew_seconds": skew,
            "refresh_latency_seconds": latency, "events": {"submitted": 0.0}}


def test_summary_takes_the_median_and_spread_per_key_and_per_taskmanager() -> None:
    runs = [_run(0.4, 0, {"tm-1/10": 1.2, "tm-2/11": 0.7}),
            _run(0.1, 3, {"tm-1/20": 0.9, "tm-2/21": 0.8}),
            _run(0.9, 0, {"tm-1/30": 2.0, "tm-2/31": 1.1})]
    summary = _benchmark().summarise(runs)
    assert summary["skew_seconds"] == 0.4
    assert summary["skew_seconds_spread"] == {"min": 0.1, "max": 0.9}
    assert summary["lost"] == 0
    assert summary["lost_spread"] == {"min": 0, "max": 3}
    assert summary["refresh_latency_seconds"] == {"tm-1": 1.2, "tm-2": 0.8}
    assert summary["refresh_latency_seconds_spread"]["tm-1"] == {"min": 0.9, "max": 2.0}
    assert summary["runs"] == runs
    assert "events" not in summary


def test_a_missing_figure_in_any_run_leaves_the_median_empty() -> None:
    runs = [{**_run(0.4, 0, {}), "skew_seconds": None}, _run(0.4, 0, {})]
    summary = _benchmark().summarise(runs)
    assert summary["skew_seconds"] is None
    assert summary["refresh_latency_seconds"] == {}


def test_no_run_is_an_error_that_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="--repeats"):
        _benchmark().summarise([])
