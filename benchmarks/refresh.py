"""Refresh: liveinference vs apache_beam.ml.inference swapping models in a running stream.

Both run the same streaming pipeline on Beam's embedded local runner: a steady stream of
rows -> RunInference watching a folder -> a sink that records when each prediction came
out and which model made it. Mid-run a second model lands whose load takes about 2 s
(its unpickling waits, as a fetch from remote storage would), then a corrupt file.

Reported for each: refresh latency (file lands -> first prediction by the new model), the
largest gap between consecutive outputs around the swap against the steady-state largest
gap, and what happened with the corrupt file.

    python benchmarks/refresh.py --output-dir benchmarks/results

Writes refresh.json and refresh.png (per-element latency over time, swap marked).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional

import apache_beam as beam
import numpy
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from sklearn.dummy import DummyClassifier

FEATURES = 4
RATE = 50
LOAD_SECONDS = 2.0
INTERVAL = 1.0


class SlowLoadingModel:
    """A classifier whose unpickling takes `delay` seconds, like a model fetched remotely."""

    def __init__(self, label: int, delay: float) -> None:
        x = numpy.zeros((2, FEATURES))
        self.model = DummyClassifier(strategy="constant", constant=label).fit(x, [label] * 2)
        self.delay = delay

    def __setstate__(self, state: Dict[str, Any]) -> None:
        time.sleep(state["delay"])
        self.__dict__.update(state)

    def predict(self, x: Any) -> Any:
        return self.model.predict(x)


def _save(model: Any, path: str) -> None:
    temporary = f"{path}.partial"
    with open(temporary, "wb") as file:
        pickle.dump(model, file)
    os.replace(temporary, path)


class _Record(beam.DoFn):
    """Appends (generated_at, output_at, model_id) of each prediction to a file."""

    def __init__(self, directory: str) -> None:
        self._directory = directory

    def setup(self) -> None:
        self._file = open(os.path.join(self._directory, f"{uuid.uuid4().hex}.jsonl"), "a")

    def process(self, result: Any) -> Iterator[None]:
        self._file.write(json.dumps([float(result.example[0]), time.time(), result.model_id]) + "\n")
        self._file.flush()
        yield from ()

    def teardown(self) -> None:
        self._file.close()


def _read(directory: str) -> List[List[Any]]:
    rows: List[List[Any]] = []
    for name in os.listdir(directory):
        with open(os.path.join(directory, name)) as file:
            rows.extend(json.loads(line) for line in file)
    return sorted(rows, key=lambda row: row[1])


def run_one(kind: str, seconds: float, drop_at: float, corrupt_at: float) -> Dict[str, Any]:
    """Runs the stream with `kind` ("liveinference" or "beam"); returns its figures."""
    if kind == "liveinference":
        from liveinference import RunInference
        from liveinference.sklearn_inference import SklearnModelHandlerNumpy
    else:
        from apache_beam.ml.inference.base import RunInference  # type: ignore[no-redef]
        from apache_beam.ml.inference.sklearn_inference import (  # type: ignore[no-redef]
            SklearnModelHandlerNumpy,
        )
    with tempfile.TemporaryDirectory() as workdir:
        folder, records = os.path.join(workdir, "models"), os.path.join(workdir, "records")
        os.makedirs(folder)
        os.makedirs(records)
        first = os.path.join(folder, "v1.pkl")
        _save(SlowLoadingModel(1, 0.0), first)
        start = time.time() + 2.0
        events: Dict[str, float] = {}

        def drop() -> None:
            time.sleep(max(0.0, start + drop_at - time.time()))
            _save(SlowLoadingModel(2, LOAD_SECONDS), os.path.join(folder, "v2.pkl"))
            events["dropped"] = time.time()
            time.sleep(max(0.0, start + corrupt_at - time.time()))
            with open(os.path.join(folder, "v3.pkl"), "wb") as file:
                file.write(b"corrupt")
            events["corrupt"] = time.time()

        threading.Thread(target=drop, daemon=True).start()
        error: Optional[str] = None
        try:
            with beam.Pipeline(options=PipelineOptions(streaming=True)) as pipeline:
                _ = (
                    pipeline
                    | PeriodicImpulse(
                        start_timestamp=start, stop_timestamp=start + seconds, fire_interval=1 / RATE
                    )
                    | beam.Map(lambda t: numpy.array([time.time(), 0.0, 0.0, 0.0]))
                    | RunInference(
                        SklearnModelHandlerNumpy(first, max_batch_size=8),
                        watch_model_pattern=os.path.join(folder, "*.pkl"),
                        interval=INTERVAL,
                        stop_timestamp=start + seconds,
                    )
                    | beam.ParDo(_Record(records))
                )
        except Exception as failure:  # noqa: BLE001 - the benchmark reports how each one fails
            error = f"{type(failure).__name__}: {str(failure).splitlines()[-1][:300]}"
        rows = _read(records)
    return _figures(kind, rows, events, error, start, seconds)


def _figures(
    kind: str, rows: List[List[Any]], events: Dict[str, float], error: Optional[str],
    start: float, seconds: float,
) -> Dict[str, Any]:
    outputs = [row[1] for row in rows]
    gaps = numpy.diff(outputs) if len(outputs) > 1 else numpy.array([0.0])
    dropped = events.get("dropped")
    new = [row for row in rows if row[2] and row[2].endswith("v2.pkl")]
    first_new = new[0][1] if new else None
    corrupt = events.get("corrupt")

    def largest_gap(low: Optional[float], high: Optional[float]) -> Optional[float]:
        if low is None or high is None:
            return None
        inside = [gap for out, gap in zip(outputs[1:], gaps) if low <= out <= high]
        return float(max(inside)) if inside else None

    steady = largest_gap(dropped - 4.0, dropped - 0.5) if dropped else None
    around = largest_gap(dropped, first_new + 1.0) if dropped and first_new else None
    around_corrupt = largest_gap(corrupt, corrupt + INTERVAL + 1.0) if corrupt else None
    models = sorted({os.path.basename(row[2]) for row in rows if row[2]})
    return {
        "implementation": kind,
        "elements_out": len(rows),
        "elements_in": int(seconds * RATE),
        "models_seen": models,
        "refresh_latency_seconds": (first_new - dropped) if first_new and dropped else None,
        "refresh_latency_bound_seconds": INTERVAL + LOAD_SECONDS + 1.0,
        "steady_largest_gap_seconds": steady,
        "swap_largest_gap_seconds": around,
        "corrupt_file_largest_gap_seconds": around_corrupt,
        "corrupt_file": "rejected; the last good model kept serving" if error is None and rows and rows[-1][2].endswith("v2.pkl") else (error or "n/a"),
        "error": error,
        "timeline": [[row[0] - start, (row[1] - row[0]) * 1000.0, os.path.basename(row[2] or "")] for row in rows],
        "dropped_at_seconds": (dropped - start) if dropped else None,
    }


def plot(results: Dict[str, Any], path: str) -> None:
    """Draws per-element latency over time for each implementation, swap marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(results["runs"])
    figure, axes = plt.subplots(len(kinds), 1, figsize=(8, 3 * len(kinds)), sharex=True)
    for axis, kind in zip(numpy.atleast_1d(axes), kinds):
        run = results["runs"][kind]
        for model in run["models_seen"]:
            points = [p for p in run["timeline"] if p[2] == model]
            axis.scatter([p[0] for p in points], [p[1] for p in points], s=4, label=model)
        if run["dropped_at_seconds"] is not None:
            axis.axvline(run["dropped_at_seconds"], color="red", linestyle="--", label="v2 lands")
        title = kind if not run["error"] else f"{kind}: {run['error'][:70]}"
        axis.set_title(title, fontsize=9)
        axis.set_ylabel("latency (ms)")
        axis.legend(fontsize=7, loc="upper left")
    numpy.atleast_1d(axes)[-1].set_xlabel("seconds since stream start")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv: List[str]) -> int:
    """Runs both implementations on the same stream; writes JSON and a plot."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--output-dir", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--implementations", default="liveinference,beam")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)
    os.makedirs(args.output_dir, exist_ok=True)
    drop_at, corrupt_at = args.seconds * 0.4, args.seconds * 0.7
    results: Dict[str, Any] = {
        "benchmark": "refresh",
        "command": "python benchmarks/refresh.py " + " ".join(argv),
        "rate_per_second": RATE,
        "load_seconds": LOAD_SECONDS,
        "poll_interval_seconds": INTERVAL,
        "beam_version": beam.__version__,
        "runs": {},
    }
    for kind in args.implementations.split(","):
        run = run_one(kind, args.seconds, drop_at, corrupt_at)
        results["runs"][kind] = run
        print(
            f"{kind}: out {run['elements_out']}/{run['elements_in']}, models {run['models_seen']}, "
            f"refresh latency {run['refresh_latency_seconds']}, steady gap "
            f"{run['steady_largest_gap_seconds']}, swap gap {run['swap_largest_gap_seconds']}, "
            f"corrupt file: {run['corrupt_file']}"
        )
    with open(os.path.join(args.output_dir, "refresh.json"), "w") as file:
        json.dump(results, file, indent=2)
    plot(results, os.path.join(args.output_dir, "refresh.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
