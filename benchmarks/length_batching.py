"""Length-aware batching: padding saved on variable-length text, count-based vs length-bucketed.

A PyTorch text model (token embedding, a per-token layer, masked mean pooling, a linear
head; initialised here with a fixed seed, no download) classifies token sequences whose
lengths follow a long-tailed distribution. RunInference (liveinference, Beam's local
runner) batches them two ways with the same batch size:

- count-based: `min_batch_size = max_batch_size = BATCH`, so a batch mixes short and long
  sequences and each is padded to the longest;
- length-bucketed: the same, plus `batch_length_fn=len` and Beam's default bucket
  boundaries [16, 32, 64, 128, 256, 512], so a batch holds sequences of similar length.

The inference function pads each batch to its longest sequence and counts the padded
tokens in a Beam counter. Each way runs `--repeats` times, interleaved; the JSON holds
every run and the median, minimum and maximum of examples per second (pipeline wall time,
start-up included) and of padded tokens.

    python benchmarks/length_batching.py --examples 4000 --repeats 3 --output-dir benchmarks/results

Writes length_batching.json and length_batching.png to the output directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence

import apache_beam as beam
import numpy
import torch
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from liveinference import PredictionResult, RunInference
from liveinference.frameworks.pytorch import PytorchModelHandlerTensor

VOCABULARY = 5000
WIDTH = 128
BATCH = 32
NAMESPACE = "length_batching"
WAYS = ("count_based", "length_bucketed")

_LOG = logging.getLogger(__name__)


class TextClassifier(torch.nn.Module):
    """Embeds tokens, applies a per-token layer, mean-pools the real tokens, classifies."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(VOCABULARY, WIDTH, padding_idx=0)
        self.per_token = torch.nn.Sequential(
            torch.nn.Linear(WIDTH, 4 * WIDTH), torch.nn.ReLU(), torch.nn.Linear(4 * WIDTH, WIDTH)
        )
        self.head = torch.nn.Linear(WIDTH, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != 0).unsqueeze(-1).float()
        hidden = self.per_token(self.embedding(tokens))
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.head(pooled)


def padded_inference(
    batch: Sequence[torch.Tensor],
    model: torch.nn.Module,
    device: Any,
    inference_args: Optional[Dict[str, Any]] = None,
    model_id: Optional[str] = None,
) -> Iterable[PredictionResult]:
    """Pads the batch to its longest sequence, counts the padding, runs the model."""
    longest = max(len(tokens) for tokens in batch)
    Metrics.counter(NAMESPACE, "padded_tokens").inc(
        sum(longest - len(tokens) for tokens in batch)
    )
    Metrics.counter(NAMESPACE, "batches").inc()
    padded = torch.nn.utils.rnn.pad_sequence(list(batch), batch_first=True)
    with torch.no_grad():
        logits = model(padded.to(device))
    return [PredictionResult(tokens, row) for tokens, row in zip(batch, logits)]


def make_examples(count: int, seed: int = 0) -> List[torch.Tensor]:
    """Token sequences of long-tailed lengths (4 to 512, median about 33), in random order."""
    rng = numpy.random.default_rng(seed)
    lengths = numpy.clip(numpy.round(numpy.exp(rng.normal(3.5, 0.8, count))), 4, 512)
    return [
        torch.from_numpy(rng.integers(1, VOCABULARY, int(length))) for length in lengths
    ]


def handler(path: str, way: str) -> PytorchModelHandlerTensor:
    """The handler for one way of batching; both have the same batch size."""
    bucketing: Dict[str, Any] = {"batch_length_fn": len} if way == "length_bucketed" else {}
    return PytorchModelHandlerTensor(
        path, TextClassifier, inference_fn=padded_inference,
        min_batch_size=BATCH, max_batch_size=BATCH, **bucketing,
    )


def run_once(path: str, way: str, examples: List[torch.Tensor]) -> Dict[str, float]:
    """Runs the pipeline once; returns seconds, examples per second, padded tokens, batches."""
    pipeline = beam.Pipeline(options=PipelineOptions(["--direct_num_workers=1"]))
    _ = (
        pipeline
        | beam.Create(examples, reshuffle=False)
        | RunInference(handler(path, way))
        | beam.Map(lambda result: Metrics.counter(NAMESPACE, "predictions").inc())
    )
    start = time.perf_counter()
    result = pipeline.run()
    result.wait_until_finish()
    seconds = time.perf_counter() - start
    query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    counters = {c.key.metric.name: c.committed for c in query["counters"]}
    if counters.get("predictions") != len(examples):
        raise RuntimeError(f"{way}: {counters.get('predictions')} of {len(examples)} predicted")
    return {
        "seconds": seconds,
        "examples_per_second": len(examples) / seconds,
        "padded_tokens": counters["padded_tokens"],
        "batches": counters["batches"],
    }


def _summary(values: List[float]) -> Dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}


def measure(examples: List[torch.Tensor], repeats: int, directory: str) -> Dict[str, Any]:
    """Runs each way `repeats` times, interleaved; returns the figures per way."""
    torch.manual_seed(0)
    path = os.path.join(directory, "text_classifier.pt")
    torch.save(TextClassifier().state_dict(), path)
    runs: Dict[str, List[Dict[str, float]]] = {way: [] for way in WAYS}
    for _ in range(repeats):
        for way in WAYS:
            runs[way].append(run_once(path, way, examples))
    figures = {
        way: {key: _summary([run[key] for run in runs[way]])
              for key in ("examples_per_second", "padded_tokens", "batches", "seconds")}
        for way in WAYS
    }
    real = sum(len(tokens) for tokens in examples)
    for way in WAYS:
        figures[way]["padding_share"] = figures[way]["padded_tokens"]["median"] / (
            real + figures[way]["padded_tokens"]["median"]
        )
    return {"real_tokens": real, **figures}


def plot(results: Dict[str, Any], path: str) -> None:
    """Draws examples/s and padded tokens per way, medians with min-max bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 4))
    labels = ["count-based", "length-bucketed"]
    for axis, key, title in (
        (axes[0], "examples_per_second", "examples per second"),
        (axes[1], "padded_tokens", "padded tokens"),
    ):
        medians = [results[way][key]["median"] for way in WAYS]
        low = [m - results[way][key]["min"] for m, way in zip(medians, WAYS)]
        high = [results[way][key]["max"] - m for m, way in zip(medians, WAYS)]
        axis.bar(labels, medians, yerr=[low, high], capsize=6, color=["#999999", "#3070b0"])
        axis.set_title(title)
    figure.suptitle(
        f"{results['examples']} token sequences, batches of {BATCH}, "
        f"{results['repeats']} runs each (median, min-max)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv: List[str]) -> int:
    """Runs the benchmark and writes JSON and a plot; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output-dir", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    _LOG.setLevel(logging.INFO)
    torch.set_num_threads(1)
    os.makedirs(args.output_dir, exist_ok=True)
    examples = make_examples(args.examples)
    with tempfile.TemporaryDirectory() as directory:
        figures = measure(examples, args.repeats, directory)
    results: Dict[str, Any] = {
        "benchmark": "length_batching",
        "command": "python benchmarks/length_batching.py " + " ".join(argv),
        "examples": args.examples,
        "repeats": args.repeats,
        "batch_size": BATCH,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1min": os.getloadavg()[0]},
        "beam_version": beam.__version__,
        "torch_version": torch.__version__,
        **figures,
    }
    count, bucketed = results["count_based"], results["length_bucketed"]
    results["padded_tokens_saved"] = 1 - (
        bucketed["padded_tokens"]["median"] / count["padded_tokens"]["median"]
    )
    results["speedup"] = (
        bucketed["examples_per_second"]["median"] / count["examples_per_second"]["median"]
    )
    with open(os.path.join(args.output_dir, "length_batching.json"), "w") as file:
        json.dump(results, file, indent=2)
    plot(results, os.path.join(args.output_dir, "length_batching.png"))
    _LOG.info(
        "count-based %.0f examples/s, %d padded tokens; length-bucketed %.0f examples/s, "
        "%d padded tokens: %.0f%% less padding, %.2fx the examples per second",
        count["examples_per_second"]["median"], count["padded_tokens"]["median"],
        bucketed["examples_per_second"]["median"], bucketed["padded_tokens"]["median"],
        100 * results["padded_tokens_saved"], results["speedup"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
