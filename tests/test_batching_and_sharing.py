"""BatchElements is driven by the handler, and one model per process serves every thread."""

from __future__ import annotations

import os

import apache_beam as beam
import numpy

from liveinference import RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy


class _RecordingHandler(SklearnModelHandlerNumpy):
    """Appends a line per model load and the size of each batch to files in `log_dir`."""

    def __init__(self, model_uri, log_dir, **kwargs):
        super().__init__(model_uri, **kwargs)
        self._log_dir = log_dir

    def load_model(self):
        with open(os.path.join(self._log_dir, "loads"), "a") as file:
            file.write(f"{os.getpid()}\n")
        return super().load_model()

    def run_inference(self, batch, model, inference_args=None):
        with open(os.path.join(self._log_dir, "batches"), "a") as file:
            file.write(f"{len(batch)}\n")
        return super().run_inference(batch, model, inference_args)


def _lines(path):
    with open(path) as file:
        return file.read().split()


def test_batch_elements_kwargs_bound_the_batches(run_pipeline, sklearn_model_path, tmp_path):
    handler = _RecordingHandler(sklearn_model_path, str(tmp_path), min_batch_size=4, max_batch_size=4)
    out = run_pipeline(
        lambda p: {"r": p | beam.Create([numpy.zeros(4)] * 12, reshuffle=False) | RunInference(handler)}
    )
    assert len(out["r"]) == 12
    assert _lines(tmp_path / "batches") == ["4", "4", "4"]


def test_with_no_batching_takes_prebatched_input(run_pipeline, sklearn_model_path, tmp_path):
    handler = _RecordingHandler(sklearn_model_path, str(tmp_path)).with_no_batching()
    batches = [[numpy.zeros(4)] * 5, [numpy.ones(4)] * 2]
    out = run_pipeline(lambda p: {"r": p | beam.Create(batches) | RunInference(handler)})
    assert len(out["r"]) == 7
    assert sorted(_lines(tmp_path / "batches")) == ["2", "5"]


def test_one_model_per_process_is_shared_by_threads_and_steps(run_pipeline, sklearn_model_path, tmp_path):
    handler = _RecordingHandler(sklearn_model_path, str(tmp_path), max_batch_size=5)
    rows = [numpy.full(4, float(i)) for i in range(200)]

    def build(p):
        source = p | beam.Create(rows)
        first = source | "First" >> RunInference(handler, model_identifier="shared-model")
        second = source | "Second" >> RunInference(handler, model_identifier="shared-model")
        return {"first": first, "second": second}

    out = run_pipeline(build, direct_running_mode="multi_threading", direct_num_workers=2)
    assert len(out["first"]) == len(out["second"]) == 200
    loads = _lines(tmp_path / "loads")
    assert len(loads) == len(set(loads)) == 1
    assert len(_lines(tmp_path / "batches")) >= 80
