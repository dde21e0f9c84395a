"""BatchElements is driven by the handler, and one model per process serves every thread."""

from __future__ import annotations

import apache_beam as beam
import numpy

from liveinference import RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.testing import RecordingHandler, recorded_batches, recorded_loads


def _recording(model_path, log_dir, **kwargs):
    return RecordingHandler(SklearnModelHandlerNumpy(model_path, **kwargs), str(log_dir))


def _sizes(log_dir):
    return [size for _, size in recorded_batches(str(log_dir))]


def test_batch_elements_kwargs_bound_the_batches(run_pipeline, sklearn_model_path, tmp_path):
    handler = _recording(sklearn_model_path, tmp_path, min_batch_size=4, max_batch_size=4)
    out = run_pipeline(
        lambda p: {"r": p | beam.Create([numpy.zeros(4)] * 12, reshuffle=False) | RunInference(handler)}
    )
    assert len(out["r"]) == 12
    assert _sizes(tmp_path) == [4, 4, 4]


def test_with_no_batching_takes_prebatched_input(run_pipeline, sklearn_model_path, tmp_path):
    handler = _recording(sklearn_model_path, tmp_path).with_no_batching()
    batches = [[numpy.zeros(4)] * 5, [numpy.ones(4)] * 2]
    out = run_pipeline(lambda p: {"r": p | beam.Create(batches) | RunInference(handler)})
    assert len(out["r"]) == 7
    assert sorted(_sizes(tmp_path)) == [2, 5]


def test_one_model_per_process_is_shared_by_threads_and_steps(run_pipeline, sklearn_model_path, tmp_path):
    handler = _recording(sklearn_model_path, tmp_path, max_batch_size=5)
    rows = [numpy.full(4, float(i)) for i in range(200)]

    def build(p):
        source = p | beam.Create(rows)
        first = source | "First" >> RunInference(handler, model_identifier="shared-model")
        second = source | "Second" >> RunInference(handler, model_identifier="shared-model")
        return {"first": first, "second": second}

    out = run_pipeline(build, direct_running_mode="multi_threading", direct_num_workers=2)
    assert len(out["first"]) == len(out["second"]) == 200
    assert len(recorded_loads(str(tmp_path))) == 1
    assert len(_sizes(tmp_path)) >= 80
