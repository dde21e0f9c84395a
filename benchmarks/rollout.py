"""Rollout: how fast a worse model is caught, and how many rows it answers first.

Runs the rollout of examples/rollout.py on Prism (streaming, LOOPBACK) for each canary
share and gate window: v1 serves, v2 (a model trained on the wrong rule: it loads, passes
its canary examples and answers every row, wrongly) is rolled out as canary and rolled back
by its accuracy on labels that arrive 1 s after the rows; then v3 (better) is rolled out and
promoted. The gate window is `min_predictions` canary predictions, with half as many of
them labelled (`min_labelled`) before the accuracy gate may pass.

Reported per cell, median and min-max over the runs: seconds from v2's start as canary to
its rollback, rows it answered before, seconds to promote v3; and per run whether every
row came out or was dead-lettered.

    python benchmarks/rollout.py --output-dir benchmarks/results

Writes rollout.json and rollout.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.rollout import TICK_SECONDS, run_rollout  # noqa: E402

FIGURES = ("seconds_to_rollback", "rows_before_rollback", "seconds_to_promote")
SLACK_SECONDS = 14  # start-up, label horizon and decisions, for both rollouts


def _load() -> List[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _spread(values: List[Any]) -> Dict[str, Any]:
    present = [value for value in values if value is not None]
    if not present:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(present), "min": min(present), "max": max(present)}


def run_cell(share: float, window: int, repeats: int, rows_per_second: int) -> Dict[str, Any]:
    """Runs one canary share and gate window `repeats` times; returns the runs and spreads."""
    per_tick = max(1, round(rows_per_second * TICK_SECONDS))
    rows = int(2 * window / share + SLACK_SECONDS * rows_per_second)
    runs = []
    for repeat in range(repeats):
        with tempfile.TemporaryDirectory(prefix="liveinference-bench-rollout-") as work:
            summary = run_rollout(work, rows, share, window, per_tick=per_tick)
        summary["no_row_lost"] = (
            summary["rows_in"] == summary["rows_out"] + summary["dead_letters"]
        )
        runs.append(summary)
        logging.getLogger(__name__).info("share %g window %d run %d: %s", share, window,
                                         repeat, {k: summary[k] for k in FIGURES})
    return {
        "canary_share": share,
        "min_predictions": window,
        "rows": rows,
        "runs": runs,
        **{figure: _spread([run[figure] for run in runs]) for figure in FIGURES},
    }


def plot(cells: List[Dict[str, Any]], path: str) -> None:
    """Time to rollback and rows answered before it, against canary share, per gate window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for window in sorted({cell["min_predictions"] for cell in cells}):
        mine = [cell for cell in cells if cell["min_predictions"] == window]
        shares = [cell["canary_share"] for cell in mine]
        for axis, figure_name in zip(axes, FIGURES[:2]):
            medians = [cell[figure_name]["median"] or 0 for cell in mine]
            below = [m - (cell[figure_name]["min"] or 0) for m, cell in zip(medians, mine)]
            above = [(cell[figure_name]["max"] or 0) - m for m, cell in zip(medians, mine)]
            axis.errorbar(shares, medians, yerr=[below, above], marker="o", capsize=3,
                          label=f"min_predictions={window}")
    axes[0].set_ylabel("seconds from canary start to rollback")
    axes[1].set_ylabel("rows the worse model answered")
    for axis in axes:
        axis.set_xlabel("canary share")
        axis.set_xscale("log")
        axis.legend()
    figure.suptitle("Worse model caught by labels (Prism, median and min-max)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> int:
    """Runs every cell, writes the JSON and the plot; returns 1 if any row was lost."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shares", default="0.05,0.1,0.25")
    parser.add_argument("--windows", default="100,500")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows-per-second", type=int, default=400)
    parser.add_argument("--output-dir", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger(__name__).setLevel(logging.INFO)
    warnings.filterwarnings("ignore", module="apache_beam.transforms.util")
    load_before = _load()
    cells = [
        run_cell(float(share), int(window), args.repeats, args.rows_per_second)
        for window in args.windows.split(",")
        for share in args.shares.split(",")
    ]
    results = {
        "runner": "Prism (streaming, LOOPBACK)",
        "rows_per_second": args.rows_per_second,
        "label_delay_seconds": 1.0,
        "repeats": args.repeats,
        "load_average_before": load_before,
        "load_average_after": _load(),
        "cells": cells,
    }
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "rollout.json"), "w") as file:
        json.dump(results, file, indent=2)
    plot(cells, os.path.join(args.output_dir, "rollout.png"))
    for cell in cells:
        figures = ", ".join(
            f"{name} {cell[name]['median']} ({cell[name]['min']}-{cell[name]['max']})"
            for name in FIGURES
        )
        print(f"share {cell['canary_share']:g} window {cell['min_predictions']}: {figures}")
    lost = [run for cell in cells for run in cell["runs"] if not run["no_row_lost"]]
    print(f"no row lost: {not lost} ({sum(len(cell['runs']) for cell in cells)} runs)")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
