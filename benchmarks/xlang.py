"""The cost of crossing languages: the same inference from a Java and a Python pipeline.

Both pipelines run on the same Prism job server over the same CSV file: read lines ->
liveinference's ConfiguredRunInference (parse in Python, scikit-learn LogisticRegression,
dead letters on) -> format a line per prediction -> append to a file. The Java pipeline is
the example `dev.liveinference.examples.ClassifyRows`, whose RunInference is expanded by the
liveinference expansion service and runs on its Python worker pool; the Python pipeline
applies the same transform directly (LOOPBACK workers). A small run of each measures the
fixed cost (job submission, worker start-up), which is subtracted to give the net rate.

    make bench-xlang            # or: python benchmarks/xlang.py --rows 200000

Writes benchmarks/results/xlang.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict

import apache_beam as beam
import numpy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples import xlang_runtime  # noqa: E402

FEATURES = 4
SMALL_ROWS = 1000
PARSE = "liveinference_expansion.functions.parse_csv_floats"


class AppendLines(beam.DoFn):
    """Appends a bundle's lines to a file when the bundle ends, as the Java example does."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lines: list = []

    def start_bundle(self) -> None:
        self._lines = []

    def process(self, line: str) -> None:
        self._lines.append(line)

    def finish_bundle(self) -> None:
        if self._lines:
            with open(self._path, "a") as file:
                file.write("\n".join(self._lines) + "\n")
            self._lines = []


def _format_prediction(row: Any) -> str:
    return f"{row.example}\t{row.inference}\t{row.model_id}"


def _format_dead_letter(row: Any) -> str:
    return f"{row.element}\t{row.stage}\t{row.error}"


def run_python(rows_file: Path, model: Path, out: Path, endpoint: str) -> float:
    """Runs the Python pipeline on the Prism job server; returns seconds from submit to done."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from liveinference_expansion import ConfiguredRunInference

    options = PipelineOptions(
        runner="PortableRunner", job_endpoint=endpoint, environment_type="LOOPBACK"
    )
    started = time.perf_counter()
    with beam.Pipeline(options=options) as pipeline:
        results = (
            pipeline
            | beam.io.ReadFromText(str(rows_file))
            | ConfiguredRunInference(
                "sklearn_numpy", {"model_uri": str(model)}, preprocess=[PARSE],
                exception_handling=True,
            )
        )
        _ = (results["predictions"] | "Format" >> beam.Map(_format_prediction)
             | "Write" >> beam.ParDo(AppendLines(str(out / "py-predictions.tsv"))))
        _ = (results["dead_letters"] | "FormatDead" >> beam.Map(_format_dead_letter)
             | "WriteDead" >> beam.ParDo(AppendLines(str(out / "py-dead.tsv"))))
    return time.perf_counter() - started


def run_java(rows_file: Path, model: Path, out: Path, endpoint: str, service: str) -> float:
    """Runs the Java example on the Prism job server; returns seconds from launch to done."""
    command = xlang_runtime.java_command(
        "dev.liveinference.examples.ClassifyRows",
        f"--input={rows_file}", f"--model={model}",
        f"--predictions={out / 'java-predictions.tsv'}", f"--deadLetters={out / 'java-dead.tsv'}",
        f"--expansionService={service}", *xlang_runtime.runner_args("prism", endpoint),
    )
    started = time.perf_counter()
    status, tail = xlang_runtime.run_logged(command, out / "java.log", timeout=1800)
    if status != 0:
        raise RuntimeError(f"the Java pipeline failed ({status}):\n{tail}")
    return time.perf_counter() - started


def _count(path: Path) -> int:
    with open(path) as file:
        return sum(1 for _ in file)


def _measure(name: str, run: Callable[[Path, Path], float], files: Dict[int, Path],
             work: Path) -> Dict[str, Any]:
    timings = {}
    for rows, rows_file in files.items():
        out = work / f"{name}-{rows}"
        out.mkdir()
        seconds = run(rows_file, out)
        predicted = _count(out / f"{'py' if name == 'python' else 'java'}-predictions.tsv")
        if predicted != rows:
            raise RuntimeError(f"{name}: {predicted} predictions for {rows} rows")
        timings[rows] = seconds
        logging.info("%s: %d rows in %.1f s", name, rows, seconds)
    small, large = min(files), max(files)
    fixed = timings[small]
    return {
        "seconds": timings[large],
        "fixed_seconds": fixed,
        "rows_per_second": large / timings[large],
        # Net of the fixed cost; None when the large run was not longer than the small one.
        "net_rows_per_second": (large - small) / (timings[large] - fixed)
        if timings[large] > fixed else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "xlang.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    missing = xlang_runtime.missing_pieces("java", "prism")
    if missing:
        raise SystemExit("missing " + "; ".join(missing))

    from sklearn.linear_model import LogisticRegression

    work = Path(tempfile.mkdtemp(prefix="liveinference-xlang-bench-"))
    rng = numpy.random.default_rng(0)
    x = rng.normal(size=(args.rows, FEATURES))
    model_path = work / "model.pkl"
    with open(model_path, "wb") as file:
        pickle.dump(LogisticRegression().fit(x[:2000], (x[:2000, 0] > 0).astype(int)), file)
    files = {}
    for rows in (SMALL_ROWS, args.rows):
        path = work / f"rows-{rows}.csv"
        with open(path, "w") as file:
            for row in x[:rows]:
                file.write(",".join(repr(float(v)) for v in row) + "\n")
        files[rows] = path

    with xlang_runtime.start_service(work) as service, xlang_runtime.start_prism(work) as prism:
        java = _measure("java", lambda f, o: run_java(f, model_path, o, prism.address,
                                                       service.address), files, work)
        python = _measure("python", lambda f, o: run_python(f, model_path, o, prism.address),
                          files, work)
    result = {
        "benchmark": "xlang",
        "description": "CSV rows -> ConfiguredRunInference (parse, sklearn LogisticRegression, "
                       "dead letters) -> file, on one Prism job server; Java pipeline through "
                       "the expansion service vs the same transform in a Python pipeline",
        "rows": args.rows,
        "features": FEATURES,
        "runner": f"Prism {xlang_runtime.PRISM.parent.name} (Beam Java/Python 2.62.0)",
        "java": java,
        "python": python,
        "java_over_python": java["rows_per_second"] / python["rows_per_second"],
        "java_over_python_net": java["net_rows_per_second"] / python["net_rows_per_second"]
        if java["net_rows_per_second"] and python["net_rows_per_second"] else None,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "command": f"python benchmarks/xlang.py --rows {args.rows}",
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
