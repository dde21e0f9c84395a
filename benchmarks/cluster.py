"""Refresh on the local Flink session cluster: latency per worker, version skew, a restart.

`make bench-cluster` (`python benchmarks/cluster.py`) uses the cluster `make flink-cluster`
started, or starts one (and stops it at the end), then runs the two scenarios of
`cluster.scenarios`:

- refresh: every worker of both TaskManagers serves v1; v2 is dropped into the watched
  directory; a corrupt v3, then v4 follow. Figures for v2.
- restart: checkpointing on; v3 takes 5 s to load and TaskManager tm-2 is SIGKILLed while its
  worker loads it, then started again; Flink restarts the job. Figures for v3.
- throughput: a batch job scoring random rows (`cluster.throughput`), 3 runs each on a
  cluster of one and of two TaskManagers with one slot each (parallelism = TaskManagers).

Refresh and restart run `--repeats` times each (default 3). Writes
benchmarks/results/cluster.json (top level: taskmanagers, workers, rows_in, rows_out,
dead_letters, lost, duplicates, skew_seconds, refresh_latency_seconds per TaskManager's
worker, each the median over the runs with `<key>_spread` (min and max) beside it, `runs`
with each run's figures, `restart` with the same keys, and `throughput` by number of
TaskManagers: median, min and max rows/s and each run) and cluster.png (which worker served
which version over time, in the last run of each scenario). `--keep-throughput` copies the
throughput figures of the existing cluster.json instead of measuring them again.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "python")]

from cluster import flink  # noqa: E402
from cluster.analysis import first_served, row_counts, versions_by_worker  # noqa: E402
from cluster.scenarios import Run, fault_scenario, refresh_scenario, restarted_workers  # noqa: E402
from cluster.state import DEFAULT_ROOT, ClusterState  # noqa: E402
from cluster.throughput import measure  # noqa: E402

_LOGGER = logging.getLogger("benchmarks.cluster")
POLL_SECONDS = 0.5
SLOW_LOAD_SECONDS = 5.0
THROUGHPUT_ROWS = 200_000
RUNS = 3


def figures(run: Run, version: int) -> Dict:
    """The figures of one run for the swap to `version`."""
    predictions = run.predictions(up_to_cutoff=False)
    dropped = run.events[f"v{version}.pkl dropped"]
    first = first_served(predictions, version)
    latency = {f"{tm}/{pid}": round(at - dropped, 3) for (tm, pid), at in sorted(first.items())}
    served = versions_by_worker(predictions)
    return {
        "taskmanagers": len(run.taskmanagers),
        "workers": len(served),
        **row_counts(run.rows_in, run.predictions(), run.failed()),
        "skew_seconds": round(max(first.values()) - min(first.values()), 3) if first else None,
        "refresh_latency_seconds": latency,
        "workers_without_the_new_version": sorted(
            f"{tm}/{pid}" for (tm, pid) in served if (tm, pid) not in first),
        "events": {name: round(at - run.events["submitted"], 3)
                   for name, at in sorted(run.events.items(), key=lambda item: item[1])},
    }


def restart_figures(run: Run, victim: str = "tm-2") -> Dict:
    """`figures` for v3, plus what the restarted job's workers served first."""
    result = figures(run, 3)
    predictions = run.predictions(up_to_cutoff=False)
    killed = run.events[f"{victim} killed"]
    restarted = restarted_workers(predictions, killed)
    served = versions_by_worker(predictions)
    starts = [r["time"] for r in predictions if (r["taskmanager"], r["pid"]) in restarted]
    result.update({
        "restarted_workers": sorted(f"{tm}/{pid}" for tm, pid in restarted),
        "seconds_from_kill_to_first_restarted_prediction": (
            round(min(starts) - killed, 3) if starts else None),
        "predictions_by_the_first_model_after_restart": sum(
            served[worker].count(1) for worker in restarted),
    })
    return result


def by_taskmanager(latency: Dict[str, float]) -> Dict[str, float]:
    """One run's refresh latencies keyed by TaskManager: its slowest worker's latency.

    Worker pids differ between runs, TaskManager names do not, so runs are compared by
    TaskManager (one worker each in these scenarios).
    """
    slowest: Dict[str, float] = {}
    for worker, seconds in latency.items():
        taskmanager = worker.split("/", 1)[0]
        slowest[taskmanager] = max(seconds, slowest.get(taskmanager, seconds))
    return slowest


def spread(values: Sequence[float]) -> Dict[str, float]:
    """The min and max of `values`."""
    return {"min": min(values), "max": max(values)}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def summarise(runs: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """The median of each number over `runs`, its `<key>_spread`, and `runs` itself.

    Args:
        runs: the figures of each run of one scenario (`figures` or `restart_figures`).

    Returns:
        Each numeric key's median (None where a run had no value) with `<key>_spread`
        (min, max); `refresh_latency_seconds` per TaskManager (the median over the runs)
        with `refresh_latency_seconds_spread`; `runs`: the runs as given.

    Raises:
        ValueError: if `runs` is empty.
    """
    if not runs:
        raise ValueError("no run to summarise: run the scenario at least once (--repeats >= 1)")
    result: Dict[str, Any] = {}
    for key in runs[0]:
        values = [run[key] for run in runs]
        if all(v is None or _number(v) for v in values) and any(_number(v) for v in values):
            if any(v is None for v in values):
                result[key], result[f"{key}_spread"] = None, None
            else:
                result[key], result[f"{key}_spread"] = statistics.median(values), spread(values)
    latencies = [by_taskmanager(run["refresh_latency_seconds"]) for run in runs]
    taskmanagers = sorted({tm for latency in latencies for tm in latency})
    result["refresh_latency_seconds"] = {
        tm: statistics.median([latency[tm] for latency in latencies if tm in latency])
        for tm in taskmanagers}
    result["refresh_latency_seconds_spread"] = {
        tm: spread([latency[tm] for latency in latencies if tm in latency])
        for tm in taskmanagers}
    result["runs"] = list(runs)
    return result


def plot(runs: Dict[str, Run], path: Path) -> None:
    """One panel per run: each worker's predictions over time, coloured by version."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(runs), 1, figsize=(10, 3.2 * len(runs)), squeeze=False)
    colours = {1: "tab:blue", 2: "tab:orange", 3: "tab:green", 4: "tab:purple"}
    for axis, (title, run) in zip(axes[:, 0], runs.items()):
        predictions = run.predictions(up_to_cutoff=False)
        zero = run.events["submitted"]
        workers: List = sorted({(r["taskmanager"], r["pid"]) for r in predictions})
        for version, colour in colours.items():
            points = [(r["time"] - zero, workers.index((r["taskmanager"], r["pid"])))
                      for r in predictions if int(r["inference"]) == version]
            if points:
                xs, ys = zip(*points)
                axis.scatter(xs, ys, s=4, color=colour, label=f"v{version}")
        for name, at in run.events.items():
            if name != "submitted":
                axis.axvline(at - zero, color="grey", linewidth=0.8, linestyle="--")
                axis.text(at - zero, len(workers) - 0.5, name, rotation=90, fontsize=7,
                          va="top")
        axis.set_yticks(range(len(workers)), [f"{tm} pid {pid}" for tm, pid in workers])
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("seconds since the job was submitted")
        axis.legend(loc="lower right", fontsize=7, markerscale=3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def throughput_runs(taskmanagers: int, scratch: Path) -> Dict:
    """Starts a cluster of `taskmanagers` with one slot each, measures RUNS times, stops it.

    One slot per TaskManager, parallelism = TaskManagers: each TaskManager runs one task, so
    the figure for two is two TaskManagers' work (with two slots each, Flink put both tasks
    of this batch job on one TaskManager).
    """
    root = DEFAULT_ROOT.with_name(f"{DEFAULT_ROOT.name}-{taskmanagers}tm-1slot")
    state = flink.start(root, taskmanagers=taskmanagers, slots=1)
    try:
        runs = [measure(state, scratch / f"throughput-{taskmanagers}-{n}", THROUGHPUT_ROWS,
                        parallelism=taskmanagers) for n in range(RUNS)]
    finally:
        flink.stop(root)
    rates = [run["rows_per_second"] for run in runs]
    return {"rows_per_second": {"median": statistics.median(rates), "min": min(rates),
                                "max": max(rates)},
            "slots_per_taskmanager": 1, "parallelism": taskmanagers, "runs": runs}


def main(argv: Optional[List[str]] = None) -> int:
    """Runs both scenarios and writes the JSON and the plot; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--repeats", type=int, default=RUNS,
                        help="runs of the refresh and of the restart scenario (default 3)")
    parser.add_argument("--keep-throughput", action="store_true",
                        help="copy throughput from the existing cluster.json, do not measure")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    kept = None
    if args.keep_throughput:
        existing = args.results / "cluster.json"
        if not existing.exists():
            parser.error(f"--keep-throughput: {existing} does not exist; run without it")
        kept = json.loads(existing.read_text())["throughput"]
        kept["kept_from_an_earlier_run"] = True
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    running = ClusterState.load(DEFAULT_ROOT)
    started = running is None or not all(record.running() for record in running.processes)
    state = flink.start(DEFAULT_ROOT) if started else running
    assert state is not None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-cluster-") as scratch:
            normals, faults = [], []
            for n in range(args.repeats):
                _LOGGER.info("run %d of %d: refresh, then restart", n + 1, args.repeats)
                normals.append(refresh_scenario(state, Path(scratch) / f"refresh-{n}"))
                faults.append(fault_scenario(state, Path(scratch) / f"restart-{n}",
                                             SLOW_LOAD_SECONDS))
            if started:
                flink.stop(DEFAULT_ROOT)
                started = False
            throughput = kept or {str(n): throughput_runs(n, Path(scratch)) for n in (1, 2)}
            result = {
                **summarise([figures(run, 2) for run in normals]),
                "poll_seconds": POLL_SECONDS,
                # The target: one poll interval + one load time (v2 loads in ms).
                "skew_target_seconds": POLL_SECONDS,
                "cluster_start_seconds": state.started_seconds,
                "restart": {**summarise([restart_figures(run) for run in faults]),
                            "load_seconds": SLOW_LOAD_SECONDS},
                # Batch job, scikit-learn; key: TaskManagers (= parallelism, one slot each).
                "throughput": throughput,
            }
            args.results.mkdir(parents=True, exist_ok=True)
            (args.results / "cluster.json").write_text(json.dumps(result, indent=2) + "\n")
            last = f"run {args.repeats} of {args.repeats}"
            plot({f"refresh: v1 -> v2 -> corrupt v3 -> v4, two TaskManagers ({last})":
                  normals[-1],
                  f"restart: tm-2 killed while v3 (5 s load) loads ({last})": faults[-1]},
                 args.results / "cluster.png")
    finally:
        if started:
            flink.stop(DEFAULT_ROOT)
    _LOGGER.info("wrote %s and cluster.png", args.results / "cluster.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
