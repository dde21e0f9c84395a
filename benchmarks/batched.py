"""Batches end to end: Parquet -> predictions -> Parquet, four ways, for four frameworks.

For scikit-learn, PyTorch, ONNX and XGBoost (the models of throughput.py), Parquet files of
32 float features are scored and written back to Parquet:

- batched: liveinference's `RunInference(...).on_batches()` on `ReadFromParquetBatched`'s
  tables, written with `WriteToParquetBatched`;
- per_row: liveinference's per-row `RunInference` on `ReadFromParquet`'s rows, each made
  the framework's example, written with `WriteToParquet`;
- beam: the same per-row pipeline with Beam's own `RunInference`;
- raw: no Beam: pyarrow reads the row groups, the framework predicts, pyarrow writes.

batched and raw score `--rows` rows (2,000,000); the per-row modes run 100-1000x slower,
so they score `--per-row-rows` (100,000; Beam's XGBoost, one predict per row,
`--xgboost-beam-rows`, 10,000), and rows/s is the figure the four share. batched also
scores `--large-rows` (10,000,000), `--large-repeats` times: its peak RSS there against
at `--rows` shows whether the batched path streams (flat) or holds the table.

Each run is a fresh process (so its peak RSS is its own) on Beam's local runner; the time
is end to end (pipeline start-up included). Runs are interleaved and repeated; the JSON has
per framework the median rows/s of each mode, its spread (min, max), the median peak RSS,
the rows each mode scored, and `flat_rss`.

    python benchmarks/batched.py --output-dir benchmarks/results

Writes batched.json and batched.png to the output directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy

from throughput import FEATURES, FRAMEWORKS

MODES = ("batched", "per_row", "beam", "raw")
ROW_GROUP = 65_536
_LOG = logging.getLogger("benchmarks.batched")


def write_input(path: str, rows: int) -> None:
    """Writes `rows` rows x FEATURES float32 columns f0.. to Parquet, a row group at a time."""
    import pyarrow
    import pyarrow.parquet

    names = [f"f{index}" for index in range(FEATURES)]
    schema = pyarrow.schema([(name, pyarrow.float32()) for name in names])
    with pyarrow.parquet.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, ROW_GROUP):
            size = min(ROW_GROUP, rows - start)
            values = numpy.random.default_rng(start).normal(size=(size, FEATURES))
            writer.write_table(pyarrow.table(dict(zip(names, values.astype(numpy.float32).T))))


def _raw_predict(framework: str, model: Any) -> Callable[[numpy.ndarray], Any]:
    """The framework's own predict call on a feature matrix."""
    if framework == "pytorch":
        import torch

        def predict(matrix: numpy.ndarray) -> Any:
            with torch.no_grad():
                return model(torch.from_numpy(matrix)).numpy()

        return predict
    if framework == "onnx":
        name = model.get_inputs()[0].name
        return lambda matrix: model.run(None, {name: matrix})[0]
    return model.predict


def _run_raw(framework: str, setup: Dict[str, Any], source: str, target: str) -> None:
    import pyarrow.parquet

    from liveinference.batched.tables import Table

    handler = setup["ours"]()
    predict = _raw_predict(framework, handler.load_model())
    reader = pyarrow.parquet.ParquetFile(source)
    writer = None
    for batch in reader.iter_batches(batch_size=ROW_GROUP):
        table = Table.of(batch)
        out = table.output(range(len(table)), predict(table.matrix()), handler.get_model_id())
        writer = writer or pyarrow.parquet.ParquetWriter(target, out.schema)
        writer.write_batch(out)
    if writer is not None:
        writer.close()


def _batched_schema(setup: Dict[str, Any], source: str) -> Any:
    """The schema of the batched output, from scoring the first rows outside the pipeline."""
    import pyarrow.parquet

    from liveinference.batched.runners import TableRunner
    from liveinference.batched.tables import Table

    handler = setup["ours"]()
    first = Table.of(next(pyarrow.parquet.ParquetFile(source).iter_batches(batch_size=8)))
    inferences = TableRunner.for_handler(handler).run(
        handler, handler.load_model(), first, range(len(first)), None)
    return first.output(range(len(first)), inferences, handler.get_model_id()).schema


def _row_out(result: Any) -> Dict[str, Any]:
    example = numpy.asarray(result.example, dtype=numpy.float32).reshape(-1)
    row: Dict[str, Any] = {f"f{index}": float(value) for index, value in enumerate(example)}
    row["inference"] = numpy.asarray(result.inference, dtype=numpy.float64).reshape(-1).tolist()
    row["model_id"] = str(result.model_id)
    return row


def _row_schema() -> Any:
    import pyarrow

    features = [(f"f{index}", pyarrow.float32()) for index in range(FEATURES)]
    return pyarrow.schema(
        [*features, ("inference", pyarrow.list_(pyarrow.float64())), ("model_id", pyarrow.string())])


def _run_pipeline(mode: str, setup: Dict[str, Any], source: str, target: str) -> None:
    import apache_beam as beam
    from apache_beam.io.parquetio import (
        ReadFromParquet,
        ReadFromParquetBatched,
        WriteToParquet,
        WriteToParquetBatched,
    )
    from apache_beam.ml.inference.base import RunInference as BeamRunInference
    from apache_beam.options.pipeline_options import PipelineOptions

    from liveinference import RunInference

    to_example = setup["to_example"]
    names = [f"f{index}" for index in range(FEATURES)]
    schema = _batched_schema(setup, source) if mode == "batched" else _row_schema()
    # The writes leave num_shards to the runner: a fixed number of shards makes Beam group
    # every batch by shard before writing, which holds the whole output in memory.
    with beam.Pipeline(options=PipelineOptions(["--direct_num_workers=1"])) as pipeline:
        if mode == "batched":
            _ = (pipeline
                 | ReadFromParquetBatched(source)
                 | RunInference(setup["ours"]()).on_batches()
                 | WriteToParquetBatched(target, schema))
            return
        transform = RunInference(setup["ours"]()) if mode == "per_row" else BeamRunInference(
            setup["beam"]())
        _ = (pipeline
             | ReadFromParquet(source)
             | "Example" >> beam.Map(
                 lambda row: to_example(numpy.array([row[n] for n in names], numpy.float32)))
             | transform
             | "Row" >> beam.Map(_row_out)
             | WriteToParquet(target, schema))


def child(framework: str, mode: str, source: str) -> Dict[str, float]:
    """Runs one mode once in this process; returns its seconds and this process's peak RSS."""
    with tempfile.TemporaryDirectory() as directory:
        setup = FRAMEWORKS[framework](directory)
        target = os.path.join(directory, "out")
        started = time.perf_counter()
        if mode == "raw":
            _run_raw(framework, setup, source, target + ".parquet")
        else:
            _run_pipeline(mode, setup, source, target)
        seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "peak_rss_mb": peak_kb / 1024}


def _measure_once(framework: str, mode: str, source: str) -> Dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", framework, mode, source],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{framework} {mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _summary(runs: List[Dict[str, float]], rows: int) -> Dict[str, Any]:
    """The median rows/s of runs over `rows` rows, its spread and the median peak RSS."""
    rates = [rows / run["seconds"] for run in runs]
    return {
        "rows_per_second": statistics.median(rates),
        "spread": [min(rates), max(rates)],
        "peak_rss_mb": statistics.median(run["peak_rss_mb"] for run in runs),
        "runs": len(runs),
    }


def measure(
    framework: str, inputs: Dict[str, Tuple[str, int]], repeats: int,
    large: Optional[Tuple[str, int]], large_repeats: int,
) -> Dict[str, Any]:
    """Times the four modes of one framework, interleaved, `repeats` times each.

    Args:
        framework: A key of throughput.FRAMEWORKS.
        inputs: Per mode, the Parquet file it scores and its number of rows.
        repeats: Runs of each mode.
        large: A larger file (and its rows) that `batched` also scores, for the flat-RSS
            check; None to skip it.
        large_repeats: Runs of `batched` on the larger file.

    Returns:
        Per mode its rows/s (median), `<mode>_spread` (min, max), `peak_rss_mb` per mode,
        `rows` per mode, the ratios of the targets, and `flat_rss` when `large` is given.
    """
    runs: Dict[str, List[Dict[str, float]]] = {mode: [] for mode in MODES}
    for repeat in range(repeats):
        for mode in MODES:
            runs[mode].append(_measure_once(framework, mode, inputs[mode][0]))
            _LOG.info("%s %s run %d (%d rows): %.2fs", framework, mode, repeat + 1,
                      inputs[mode][1], runs[mode][-1]["seconds"])
    summaries = {mode: _summary(runs[mode], inputs[mode][1]) for mode in MODES}
    figures: Dict[str, Any] = {}
    for mode, summary in summaries.items():
        figures[mode] = summary["rows_per_second"]
        figures[f"{mode}_spread"] = summary["spread"]
    figures["peak_rss_mb"] = {mode: summaries[mode]["peak_rss_mb"] for mode in MODES}
    figures["rows"] = {mode: inputs[mode][1] for mode in MODES}
    figures["batched_over_raw"] = figures["batched"] / figures["raw"]
    figures["batched_over_beam"] = figures["batched"] / figures["beam"]
    figures["per_row_over_beam"] = figures["per_row"] / figures["beam"]
    if large is not None:
        large_runs = []
        for repeat in range(large_repeats):
            large_runs.append(_measure_once(framework, "batched", large[0]))
            _LOG.info("%s batched run %d (%d rows): %.2fs", framework, repeat + 1, large[1],
                      large_runs[-1]["seconds"])
        at_large = _summary(large_runs, large[1])
        figures["flat_rss"] = {
            "rows": [inputs["batched"][1], large[1]],
            "batched_peak_rss_mb": [figures["peak_rss_mb"]["batched"], at_large["peak_rss_mb"]],
            "batched_rows_per_second": [figures["batched"], at_large["rows_per_second"]],
            "runs": [repeats, at_large["runs"]],
            "growth": at_large["peak_rss_mb"] / figures["peak_rss_mb"]["batched"],
        }
    return figures


def plot(results: Dict[str, Any], path: str) -> None:
    """Draws rows/s per framework and mode (median, with the spread) as a bar chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frameworks = list(results["frameworks"])
    figure, axis = plt.subplots(figsize=(8, 4))
    width = 0.2
    for index, mode in enumerate(MODES):
        values = [results["frameworks"][f][mode] for f in frameworks]
        spreads = [results["frameworks"][f][f"{mode}_spread"] for f in frameworks]
        errors = [[v - s[0] for v, s in zip(values, spreads)],
                  [s[1] - v for v, s in zip(values, spreads)]]
        positions = [i + index * width for i in range(len(frameworks))]
        axis.bar(positions, values, width, yerr=errors, label=mode, capsize=2)
    axis.set_xticks([i + 1.5 * width for i in range(len(frameworks))], frameworks)
    axis.set_ylabel("rows per second, end to end")
    axis.set_yscale("log")
    axis.set_title(f"Parquet -> RunInference -> Parquet, {FEATURES} features\n"
                   f"batched, raw: {results['rows']:,} rows; per row: {results['per_row_rows']:,}")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv: List[str]) -> int:
    """Runs the benchmark (or, with --child, one run of it); returns the exit status."""
    if argv[:1] == ["--child"]:
        logging.getLogger().setLevel(logging.ERROR)
        sys.stdout.write(json.dumps(child(*argv[1:4])) + "\n")
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000,
                        help="rows that batched and raw score")
    parser.add_argument("--per-row-rows", type=int, default=100_000,
                        help="rows that per_row and beam score (100-1000x slower)")
    parser.add_argument("--xgboost-beam-rows", type=int, default=10_000,
                        help="rows that Beam's per-row XGBoost scores (one predict per row)")
    parser.add_argument("--large-rows", type=int, default=10_000_000,
                        help="rows batched also scores, for peak RSS; 0 to skip")
    parser.add_argument("--large-repeats", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--output-dir", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import apache_beam

    results: Dict[str, Any] = {
        "benchmark": "batched",
        "command": "python benchmarks/batched.py " + " ".join(argv),
        "rows": args.rows,
        "per_row_rows": args.per_row_rows,
        "xgboost_beam_rows": args.xgboost_beam_rows,
        "large_rows": args.large_rows,
        "features": FEATURES,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "beam_version": apache_beam.__version__,
        "frameworks": {},
    }
    with tempfile.TemporaryDirectory() as directory:
        def source(rows: int) -> Tuple[str, int]:
            path = os.path.join(directory, f"input-{rows}.parquet")
            if not os.path.exists(path):
                write_input(path, rows)
            return path, rows

        large = source(args.large_rows) if args.large_rows else None
        for framework in args.frameworks.split(","):
            inputs = {mode: source(args.rows) for mode in ("batched", "raw")}
            inputs["per_row"] = inputs["beam"] = source(args.per_row_rows)
            if framework == "xgboost":
                inputs["beam"] = source(args.xgboost_beam_rows)
            figures = measure(framework, inputs, args.repeats, large, args.large_repeats)
            results["frameworks"][framework] = figures
            _LOG.info("%s: batched %.0f rows/s, per_row %.0f, beam %.0f, raw %.0f; peak RSS MB %s",
                      framework, figures["batched"], figures["per_row"], figures["beam"],
                      figures["raw"], figures["peak_rss_mb"])
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "batched.json"), "w") as file:
        json.dump(results, file, indent=2)
    plot(results, os.path.join(args.output_dir, "batched.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
