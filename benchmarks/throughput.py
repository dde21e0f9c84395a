"""Throughput: liveinference vs apache_beam.ml.inference vs the raw framework call.

The same pipeline (rows generated in the pipeline -> RunInference -> count) runs with each
RunInference on Beam's embedded local runner; the raw loop calls the framework on the same
batches with no pipeline around it (the limit). Pipeline start-up is measured on a tiny
input and subtracted to give the net rate; one tiny run of each implementation first warms
up imports and caches. Runs are interleaved and repeated; medians are reported.

The per-row cost of each RunInference is its pipeline's CPU time (this process, all threads;
steadier than wall time on a shared machine) less that of the same pipeline without
RunInference (rows generated and counted, which also makes the framework's example type),
divided by the rows: microseconds per row, median and spread (min, max) over the runs. With scikit-learn and PyTorch both measured (the same size of model: a linear model of
32 features), `pytorch_over_sklearn_per_row` compares their per-row costs.

    python benchmarks/throughput.py --rows 200000 --output-dir benchmarks/results

Writes throughput.json and throughput.png to the output directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import apache_beam as beam
import numpy

FEATURES = 32
CHUNKS = 100
BATCH_SIZE = 1000
STARTUP_ROWS = 100


def _make_sklearn(directory: str) -> Dict[str, Any]:
    from apache_beam.ml.inference.sklearn_inference import SklearnModelHandlerNumpy as BeamHandler
    from sklearn.linear_model import LogisticRegression

    from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy as OurHandler

    x = numpy.random.default_rng(0).normal(size=(2000, FEATURES)).astype(numpy.float32)
    model = LogisticRegression().fit(x, (x[:, 0] + x[:, 1] > 0).astype(int))
    path = os.path.join(directory, "model.pkl")
    with open(path, "wb") as file:
        pickle.dump(model, file)
    sizes = {"min_batch_size": BATCH_SIZE, "max_batch_size": BATCH_SIZE}

    def raw(batches: List[List[numpy.ndarray]]) -> int:
        return sum(len(model.predict(numpy.stack(batch))) for batch in batches)

    return {
        "ours": lambda: OurHandler(path, **sizes),
        "beam": lambda: BeamHandler(path, **sizes),
        "to_example": lambda row: row,
        "raw": raw,
    }


def _make_pytorch(directory: str) -> Dict[str, Any]:
    import torch
    from apache_beam.ml.inference.pytorch_inference import PytorchModelHandlerTensor as BeamHandler

    from liveinference.frameworks.pytorch import PytorchModelHandlerTensor as OurHandler

    torch.set_num_threads(1)
    model = torch.nn.Linear(FEATURES, 2)
    path = os.path.join(directory, "model.pt")
    torch.save(model.state_dict(), path)
    model.eval()
    arguments = dict(
        state_dict_path=path,
        model_class=torch.nn.Linear,
        model_params={"in_features": FEATURES, "out_features": 2},
        min_batch_size=BATCH_SIZE,
        max_batch_size=BATCH_SIZE,
    )

    def raw(batches: List[List[Any]]) -> int:
        with torch.no_grad():
            return sum(len(model(torch.stack(batch))) for batch in batches)

    return {
        "ours": lambda: OurHandler(**arguments),
        "beam": lambda: BeamHandler(**arguments),
        "to_example": _to_tensor,
        "raw": raw,
    }


def _to_tensor(row: numpy.ndarray) -> Any:
    import torch

    return torch.from_numpy(row)


def _make_onnx(directory: str) -> Dict[str, Any]:
    import onnx
    import onnxruntime
    from apache_beam.ml.inference.onnx_inference import OnnxModelHandlerNumpy as BeamHandler
    from onnx import TensorProto, helper, numpy_helper

    from liveinference.frameworks.onnx import OnnxModelHandlerNumpy as OurHandler

    # A linear layer written as an ONNX graph: x @ W + b.
    rng = numpy.random.default_rng(0)
    weights = rng.normal(size=(FEATURES, 2)).astype(numpy.float32)
    bias = rng.normal(size=2).astype(numpy.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        initializer=[numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = os.path.join(directory, "model.onnx")
    onnx.save_model(model, path)
    providers = ["CPUExecutionProvider"]
    arguments = dict(providers=providers, min_batch_size=BATCH_SIZE, max_batch_size=BATCH_SIZE)
    session = onnxruntime.InferenceSession(path, providers=providers)

    def raw(batches: List[List[numpy.ndarray]]) -> int:
        return sum(len(session.run(None, {"x": numpy.stack(batch)})[0]) for batch in batches)

    return {
        "ours": lambda: OurHandler(path, **arguments),
        "beam": lambda: BeamHandler(path, **arguments),
        "to_example": lambda row: row,
        "raw": raw,
    }


def _make_xgboost(directory: str) -> Dict[str, Any]:
    import xgboost
    from apache_beam.ml.inference.xgboost_inference import XGBoostModelHandlerNumpy as BeamHandler

    from liveinference.frameworks.xgboost import XGBoostModelHandlerNumpy as OurHandler

    x = numpy.random.default_rng(0).normal(size=(2000, FEATURES)).astype(numpy.float32)
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=4, n_jobs=1)
    model.fit(x, (x[:, 0] + x[:, 1] > 0).astype(int))
    path = os.path.join(directory, "model.json")
    model.save_model(path)
    arguments = dict(
        model_class=xgboost.XGBClassifier,
        model_state=path,
        min_batch_size=BATCH_SIZE,
        max_batch_size=BATCH_SIZE,
    )

    def raw(batches: List[List[numpy.ndarray]]) -> int:
        return sum(len(model.predict(numpy.concatenate(batch))) for batch in batches)

    return {
        "ours": lambda: OurHandler(**arguments),
        "beam": lambda: BeamHandler(**arguments),
        "to_example": _to_one_row_table,
        "raw": raw,
    }


def _to_one_row_table(row: numpy.ndarray) -> numpy.ndarray:
    """XGBoost handlers take tables (rows x features): one row per example here."""
    return row.reshape(1, -1)


FRAMEWORKS: Dict[str, Callable[[str], Dict[str, Any]]] = {
    "sklearn": _make_sklearn,
    "pytorch": _make_pytorch,
    "onnx": _make_onnx,
    "xgboost": _make_xgboost,
}


class _GenerateRows(beam.DoFn):
    """Emits `rows` rows of FEATURES floats for one chunk number, as framework examples."""

    def __init__(self, rows: int, to_example: Callable[[Any], Any]) -> None:
        self._rows = rows
        self._to_example = to_example

    def process(self, chunk: int):
        values = numpy.random.default_rng(chunk).normal(size=(self._rows, FEATURES))
        for row in values.astype(numpy.float32):
            yield self._to_example(row)


def _time_pipeline(
    transform: Optional[Callable[[], beam.PTransform]], rows: int, to_example: Any
) -> Tuple[float, float]:
    """Runs rows generated -> `transform()` (left out when None) -> count; returns its wall
    time and its CPU time (this process), in seconds."""
    from apache_beam.options.pipeline_options import PipelineOptions

    chunks = min(CHUNKS, rows)
    started, cpu = time.perf_counter(), time.process_time()
    with beam.Pipeline(options=PipelineOptions(["--direct_num_workers=1"])) as pipeline:
        examples = (
            pipeline
            | beam.Create(list(range(chunks)))
            | beam.ParDo(_GenerateRows(rows // chunks, to_example))
        )
        if transform is not None:
            examples = examples | transform()
        _ = examples | beam.combiners.Count.Globally()
    return time.perf_counter() - started, time.process_time() - cpu


def _time_raw(raw: Callable[[List[Any]], int], rows: int, to_example: Any) -> float:
    chunks = min(CHUNKS, rows)
    examples: List[Any] = []
    for chunk in range(chunks):
        values = numpy.random.default_rng(chunk).normal(size=(rows // chunks, FEATURES))
        examples.extend(to_example(row) for row in values.astype(numpy.float32))
    batches = [examples[i:i + BATCH_SIZE] for i in range(0, len(examples), BATCH_SIZE)]
    started = time.perf_counter()
    predicted = raw(batches)
    elapsed = time.perf_counter() - started
    assert predicted == len(examples), (predicted, len(examples))
    return elapsed


def measure(framework: str, rows: int, repeats: int) -> Dict[str, Any]:
    """Times liveinference, Beam and the raw loop for one framework; returns the figures."""
    from apache_beam.ml.inference.base import RunInference as BeamRunInference

    from liveinference import RunInference as OurRunInference

    with tempfile.TemporaryDirectory() as directory:
        setup = FRAMEWORKS[framework](directory)
        transforms = {
            "liveinference": lambda: OurRunInference(setup["ours"]()),
            "beam": lambda: BeamRunInference(setup["beam"]()),
        }
        seconds: Dict[str, List[float]] = {name: [] for name in [*transforms, "raw"]}
        startup: Dict[str, List[float]] = {name: [] for name in transforms}
        cpu: Dict[str, List[float]] = {name: [] for name in [*transforms, "input"]}
        for transform in transforms.values():
            _time_pipeline(transform, STARTUP_ROWS, setup["to_example"])
        for _ in range(repeats):
            for name, transform in transforms.items():
                startup[name].append(
                    _time_pipeline(transform, STARTUP_ROWS, setup["to_example"])[0]
                )
                wall, used = _time_pipeline(transform, rows, setup["to_example"])
                seconds[name].append(wall)
                cpu[name].append(used)
            cpu["input"].append(_time_pipeline(None, rows, setup["to_example"])[1])
            seconds["raw"].append(_time_raw(setup["raw"], rows, setup["to_example"]))
    median = {name: statistics.median(values) for name, values in seconds.items()}
    median_startup = {name: statistics.median(values) for name, values in startup.items()}
    net = {name: max(median[name] - median_startup[name], 1e-9) for name in transforms}
    median_input = statistics.median(cpu["input"])
    per_row = {
        name: [(value - median_input) / rows * 1e6 for value in cpu[name]] for name in transforms
    }
    return {
        "cpu_seconds": {name: statistics.median(values) for name, values in cpu.items()},
        "per_row_microseconds": {name: statistics.median(v) for name, v in per_row.items()},
        "per_row_microseconds_spread": {name: [min(v), max(v)] for name, v in per_row.items()},
        "rows": rows,
        "batch_size": BATCH_SIZE,
        "seconds": median,
        "startup_seconds": median_startup,
        "net_seconds": net,
        "rows_per_second": {name: rows / value for name, value in median.items()},
        "net_rows_per_second": {name: rows / value for name, value in net.items()},
        "liveinference_over_beam": median["beam"] / median["liveinference"],
        "liveinference_net_over_raw": median["raw"] / net["liveinference"],
        "all_runs_seconds": seconds,
    }


def plot(results: Dict[str, Any], path: str) -> None:
    """Draws rows/s per framework and implementation as a bar chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frameworks = list(results["frameworks"])
    names = ["liveinference", "beam", "raw"]
    figure, axis = plt.subplots(figsize=(7, 4))
    width = 0.25
    for index, name in enumerate(names):
        values = [
            results["frameworks"][f][
                "rows_per_second" if name == "raw" else "net_rows_per_second"
            ][name] for f in frameworks
        ]
        axis.bar([i + index * width for i in range(len(frameworks))], values, width, label=name)
    axis.set_xticks([i + width for i in range(len(frameworks))], frameworks)
    axis.set_ylabel("rows per second (pipelines net of start-up)")
    axis.set_yscale("log")
    axis.set_title(f"RunInference throughput, {results['rows']} rows")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv: List[str]) -> int:
    """Runs the benchmark and writes JSON and a plot; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--output-dir", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)
    os.makedirs(args.output_dir, exist_ok=True)
    results: Dict[str, Any] = {
        "benchmark": "throughput",
        "command": "python benchmarks/throughput.py " + " ".join(argv),
        "rows": args.rows,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "beam_version": beam.__version__,
        "frameworks": {},
    }
    for framework in args.frameworks.split(","):
        figures = measure(framework, args.rows, args.repeats)
        results["frameworks"][framework] = figures
        rates = figures["net_rows_per_second"]
        print(
            f"{framework}: liveinference {rates['liveinference']:,.0f} rows/s net, "
            f"beam {rates['beam']:,.0f}, raw {figures['rows_per_second']['raw']:,.0f}; "
            f"liveinference/beam {figures['liveinference_over_beam']:.2f}x, "
            f"raw/liveinference-net {figures['liveinference_net_over_raw']:.2f}; per row: "
            f"liveinference {figures['per_row_microseconds']['liveinference']:.2f} us, "
            f"beam {figures['per_row_microseconds']['beam']:.2f} us"
        )
    measured = results["frameworks"]
    if "sklearn" in measured and "pytorch" in measured:
        costs = {name: measured[name]["per_row_microseconds"] for name in ("sklearn", "pytorch")}
        ratio = {
            name: costs["pytorch"][name] / max(costs["sklearn"][name], 1e-9)
            for name in costs["sklearn"]
        }
        results["pytorch_over_sklearn_per_row"] = ratio
        print(
            f"per-row cost, PyTorch over scikit-learn: liveinference "
            f"{ratio['liveinference']:.2f}x, beam {ratio['beam']:.2f}x"
        )
    with open(os.path.join(args.output_dir, "throughput.json"), "w") as file:
        json.dump(results, file, indent=2)
    plot(results, os.path.join(args.output_dir, "throughput.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
