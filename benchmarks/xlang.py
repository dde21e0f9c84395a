"""The cost of crossing languages: the same inference from Java and from Python, per runner.

Every job reads the same CSV file, classifies each row with a scikit-learn LogisticRegression
and appends one line per prediction to a file. Variants, on Prism and on Flink (local mode):

- `python`: a Python pipeline applying liveinference's ConfiguredRunInference directly
  (LOOPBACK workers);
- `java`: the Java example ClassifyRows (liveinference's Java RunInference, one row per
  cross-language element);
- `java_batched`: the same with `withCrossingBatch` (`--crossingBatch`);
- `stock_java`: Beam's own Java RunInference (StockBeamClassify), unchanged, against
  `liveinference serve --allow-inline-source`.

Each job is a fresh process (a JVM, or a Python interpreter importing Beam), timed from
launch to exit, so fixed costs compare like for like. The JVMs map the class-data archive
of the current Java build (recorded first by one untimed job when missing); one untimed job
warms each runner up before the timed ones. A small run of each variant measures
the fixed cost (launch, expansion, submission, worker start); the net rate is
(rows - small rows) / (large seconds - small seconds), paired run by run. Every figure is
min / median / max over `--repeats` runs, variants interleaved.

    python benchmarks/xlang.py --rows 20000 --repeats 3 --runners prism

Writes benchmarks/results/xlang.json and xlang.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import apache_beam as beam
import numpy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples import xlang_runtime  # noqa: E402

FEATURES = 4
PARSE = "liveinference_expansion.functions.parse_csv_floats"
VARIANTS = ("python", "java", "java_batched", "stock_java")
_LOGGER = logging.getLogger("xlang")


class AppendLines(beam.DoFn):
    """Appends a bundle's lines to a file when the bundle ends, as the Java example does."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lines: List[str] = []

    def start_bundle(self) -> None:
        self._lines = []

    def process(self, line: str) -> None:
        self._lines.append(line)

    def finish_bundle(self) -> None:
        if self._lines:
            with open(self._path, "a") as file:
                file.write("\n".join(self._lines) + "\n")
            self._lines = []


def run_python_child(rows_file: str, model: str, out: str, endpoint: str) -> None:
    """The Python job (run in its own process): the transform Java users get, from Python.

    Lines are appended per bundle as the Java example does (Beam's WriteToText reads side
    inputs, which Prism refuses from a LOOPBACK worker's state channel without a worker id).
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    from liveinference_expansion import ConfiguredRunInference

    options = PipelineOptions(
        runner="PortableRunner", job_endpoint=endpoint, environment_type="LOOPBACK"
    )
    with beam.Pipeline(options=options) as pipeline:
        results = (
            pipeline
            | beam.io.ReadFromText(rows_file)
            | ConfiguredRunInference(
                "sklearn_numpy", {"model_uri": model}, preprocess=[PARSE],
                exception_handling=True,
            )
        )
        _ = (results["predictions"]
             | "Format" >> beam.Map(lambda r: f"{r.example}\t{r.inference}\t{r.model_id}")
             | "Write" >> beam.ParDo(AppendLines(out)))


def _command(variant: str, runner: str, endpoint: str, service: str, rows_file: Path,
             model: Path, out: Path, crossing_batch: int) -> List[str]:
    if variant == "python":
        return [sys.executable, str(Path(__file__).resolve()), "--child", str(rows_file),
                str(model), str(out), endpoint]
    common = [f"--input={rows_file}", f"--model={model}", f"--predictions={out}",
              f"--expansionService={service}", *xlang_runtime.runner_args(runner, endpoint)]
    if variant == "stock_java":
        return xlang_runtime.java_command("dev.liveinference.examples.StockBeamClassify", *common)
    extra = [f"--crossingBatch={crossing_batch}"] if variant == "java_batched" else []
    return xlang_runtime.java_command(
        "dev.liveinference.examples.ClassifyRows", *common,
        f"--deadLetters={out.with_suffix('.dead')}", *extra,
    )


def _job(command: List[str], out: Path, rows: int, log: Path) -> float:
    started = time.perf_counter()
    status, tail = xlang_runtime.run_logged(command, log, timeout=1800)
    seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{command[-1]} failed ({status}); see {log}:\n{tail}")
    with open(out) as file:
        predicted = sum(1 for _ in file)
    if predicted != rows:
        raise RuntimeError(f"{predicted} predictions for {rows} rows; see {log}")
    return seconds


def _record_class_archive(kind: str, endpoint: str, service: str, rows_file: Path,
                          model: Path, folder: Path) -> None:
    """Records the JVM class-data archive with one small, untimed job, unless one exists.

    Raises:
        RuntimeError: the recording job failed.
    """
    archive = xlang_runtime.class_archive()
    if archive is None or archive.exists():
        return
    out = folder / "class-archive.tsv"
    command = _command("java", kind, endpoint, service, rows_file, model, out, 0)
    main = command.index("dev.liveinference.examples.ClassifyRows")
    status, tail = xlang_runtime.record_class_archive(
        command[main], *command[main + 1:], log=out.with_suffix(".log"), timeout=600)
    if status != 0:
        raise RuntimeError(f"recording the class-data archive failed ({status}):\n{tail}")
    _LOGGER.info("recorded the class-data archive %s", archive)


def _spread(values: List[float]) -> Dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


@contextlib.contextmanager
def _runner(kind: str, work: Path) -> Iterator[Any]:
    start = xlang_runtime.start_prism if kind == "prism" else xlang_runtime.start_flink
    with start(work) as running:
        yield running


def measure_runner(kind: str, args: argparse.Namespace, files: Dict[int, Path], model: Path,
                   work: Path) -> Dict[str, Any]:
    """Runs every variant `args.repeats` times at both sizes on one runner."""
    # Flink's Java job server cannot dial the pool's Unix socket: PROCESS workers there.
    flags = ["--allow-inline-source"] + (["--process-workers"] if kind == "flink" else [])
    seconds: Dict[str, Dict[int, List[float]]] = {v: {n: [] for n in files} for v in args.variants}
    folder = work / kind
    folder.mkdir()
    with xlang_runtime.start_service(folder, *flags) as service, _runner(kind, folder) as runner:
        _record_class_archive(kind, runner.address, service.address, files[min(files)], model,
                              folder)
        # The runner's first job after its start pays the runner's own warm-up (class loading,
        # JIT), which would otherwise fall on whichever variant runs first: one untimed job.
        warm_up = folder / "warm-up.tsv"
        _job(_command("python", kind, runner.address, service.address, files[min(files)], model,
                      warm_up, args.crossing_batch), warm_up, min(files),
             warm_up.with_suffix(".log"))
        for repeat in range(args.repeats):
            for variant in args.variants:
                for rows, rows_file in files.items():
                    out = folder / f"{variant}-{rows}-{repeat}.tsv"
                    command = _command(variant, kind, runner.address, service.address,
                                       rows_file, model, out, args.crossing_batch)
                    took = _job(command, out, rows, out.with_suffix(".log"))
                    seconds[variant][rows].append(took)
                    _LOGGER.info("%s %s %d rows: %.1f s", kind, variant, rows, took)
    small, large = min(files), max(files)
    result: Dict[str, Any] = {}
    for variant, runs in seconds.items():
        net = [(large - small) / (big - fixed)
               for big, fixed in zip(runs[large], runs[small]) if big > fixed]
        result[variant] = {
            "seconds": runs,
            "rows_per_second": _spread([large / s for s in runs[large]]),
            "fixed_seconds": _spread(runs[small]),
            "net_rows_per_second": _spread(net) if net else None,
        }
    if "python" in result:
        base = result["python"]
        for variant in result:
            ours = result[variant]
            ours["over_python"] = (ours["rows_per_second"]["median"]
                                   / base["rows_per_second"]["median"])
            ours["over_python_net"] = (
                ours["net_rows_per_second"]["median"] / base["net_rows_per_second"]["median"]
                if ours["net_rows_per_second"] and base["net_rows_per_second"] else None)
    return result


def plot(results: Dict[str, Any], path: Path) -> None:
    """Median rows/s (min-max bars) and fixed seconds per variant and runner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    runners = list(results)
    width = 0.8 / max(1, len(VARIANTS))
    for index, variant in enumerate(VARIANTS):
        for axis, key in zip(axes, ("rows_per_second", "fixed_seconds")):
            xs, medians, lows, highs = [], [], [], []
            for position, runner in enumerate(runners):
                if variant not in results[runner]:
                    continue
                spread = results[runner][variant][key]
                xs.append(position + index * width)
                medians.append(spread["median"])
                lows.append(spread["median"] - spread["min"])
                highs.append(spread["max"] - spread["median"])
            if xs:
                axis.bar(xs, medians, width, yerr=[lows, highs], capsize=3, label=variant)
    for axis, title in zip(axes, ("rows/s end to end (median, min-max)", "fixed cost, s")):
        axis.set_xticks([p + width * (len(VARIANTS) - 1) / 2 for p in range(len(runners))])
        axis.set_xticklabels(runners)
        axis.set_title(title)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def _write_inputs(work: Path, sizes: List[int]) -> Dict[int, Path]:
    from sklearn.linear_model import LogisticRegression

    rng = numpy.random.default_rng(0)
    x = rng.normal(size=(max(sizes), FEATURES))
    model = work / "model.pkl"
    with open(model, "wb") as file:
        pickle.dump(LogisticRegression().fit(x[:2000], (x[:2000, 0] > 0).astype(int)), file)
    files = {}
    for rows in sorted(sizes):
        path = work / f"rows-{rows}.csv"
        with open(path, "w") as file:
            for row in x[:rows]:
                file.write(",".join(repr(float(v)) for v in row) + "\n")
        files[rows] = path
    return files


def _write_report(args: argparse.Namespace, results: Dict[str, Any],
                  load: Tuple[float, float, float], output: Path) -> None:
    """Writes the JSON and the plot of the runners measured so far (after each runner, so a
    run cut short keeps what it finished)."""
    report = {
        "benchmark": "xlang",
        "description": __doc__.split("\n\n")[1].strip(),
        "rows": args.rows, "small_rows": args.small_rows, "repeats": args.repeats,
        "features": FEATURES, "crossing_batch": args.crossing_batch,
        "beam": "Java/Python 2.62.0; Prism " + xlang_runtime.PRISM.parent.name,
        "class_archive": str(xlang_runtime.class_archive()),
        "results": results,
        "load_average_before": load, "load_average_after": os.getloadavg(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "command": "python benchmarks/xlang.py " + " ".join(sys.argv[1:]),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    plot(results, output.with_suffix(".png"))
    _LOGGER.info("wrote %s and %s (%s)", output, output.with_suffix(".png"), ", ".join(results))


def main() -> int:
    """Runs the benchmark; writes the JSON and the plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--small-rows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runners", default="prism,flink")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--crossing-batch", type=int, default=500)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "xlang.json"))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.child:
        run_python_child(*args.child)
        return 0
    args.variants = [v for v in args.variants.split(",") if v]
    runners = [r for r in args.runners.split(",") if r]
    unknown = sorted(set(args.variants) - set(VARIANTS)) + sorted(
        set(runners) - {"prism", "flink"})
    if unknown or args.rows <= args.small_rows:
        raise SystemExit(f"unknown variants/runners {unknown}, or --rows {args.rows} not above "
                         f"--small-rows {args.small_rows}; variants are {VARIANTS}")
    missing = xlang_runtime.missing_pieces("java", *runners)
    if missing:
        raise SystemExit("missing " + "; ".join(missing))
    work = Path(tempfile.mkdtemp(prefix="liveinference-xlang-bench-"))
    files = _write_inputs(work, [args.small_rows, args.rows])
    load = os.getloadavg()
    results: Dict[str, Any] = {}
    for runner in runners:
        results[runner] = measure_runner(runner, args, files, work / "model.pkl", work)
        _write_report(args, results, load, Path(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
