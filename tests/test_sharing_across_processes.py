"""large_model / model_copies: one copy of the model per machine, shared by worker processes.

The pipelines run on Beam's local runner with two worker processes. Each process appends
its pid to a file when it loads the model and when it runs a batch, so the files tell how
many loads there were and which processes used the model.
"""

from __future__ import annotations

import os

import apache_beam as beam
import pytest

from liveinference import RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.testing import RecordingHandler, recorded_batches, recorded_loads

TESTS = os.path.dirname(os.path.abspath(__file__))
LIBRARY = os.path.join(os.path.dirname(TESTS), "python")


def _pid_recording(model_path, log_dir, **kwargs):
    """A scikit-learn handler (batches of up to 10) recording the pid of each load and batch."""
    return RecordingHandler(SklearnModelHandlerNumpy(model_path, max_batch_size=10, **kwargs), str(log_dir))


def _batch_pids(log_dir):
    return [pid for pid, _ in recorded_batches(str(log_dir))]


@pytest.fixture
def worker_path(monkeypatch):
    """Lets the worker processes import this module and liveinference."""
    paths = [TESTS, LIBRARY, os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path for path in paths if path))


def _run_two_processes(run_pipeline, handler, rows):
    out = run_pipeline(
        lambda p: {"r": p | beam.Create(rows) | RunInference(handler)},
        direct_running_mode="multi_processing",
        direct_num_workers=2,
    )
    return out["r"]


@pytest.mark.parametrize("sharing", [{"large_model": True}, {"model_copies": 1}], ids=["large_model", "model_copies"])
def test_two_worker_processes_share_one_load_per_machine(run_pipeline, worker_path, sklearn_model_path, dataset, tmp_path, sharing):
    x, _ = dataset
    rows = list(x[:200])
    handler = _pid_recording(sklearn_model_path, tmp_path, **sharing)
    assert handler.share_model_across_processes()
    out = _run_two_processes(run_pipeline, handler, rows)
    expected = SklearnModelHandlerNumpy(sklearn_model_path).load_model().predict(x[:200])
    assert sorted((tuple(r.example), r.inference) for r in out) == sorted(
        (tuple(row), label) for row, label in zip(rows, expected)
    )
    assert len(set(_batch_pids(tmp_path))) == 2, "both worker processes should run batches"
    assert len(recorded_loads(str(tmp_path))) == 1


def test_without_sharing_each_worker_process_loads_its_own_copy(run_pipeline, worker_path, sklearn_model_path, dataset, tmp_path):
    x, _ = dataset
    handler = _pid_recording(sklearn_model_path, tmp_path)
    out = _run_two_processes(run_pipeline, handler, list(x[:200]))
    assert len(out) == 200
    batch_pids = set(_batch_pids(tmp_path))
    assert len(batch_pids) == 2
    assert sorted(recorded_loads(str(tmp_path))) == sorted(batch_pids)


def test_model_copies_loads_that_many_copies_per_machine(run_pipeline, worker_path, sklearn_model_path, dataset, tmp_path):
    x, _ = dataset
    handler = _pid_recording(sklearn_model_path, tmp_path, model_copies=2)
    out = _run_two_processes(run_pipeline, handler, list(x[:200]))
    assert len(out) == 200
    assert len(recorded_loads(str(tmp_path))) == 2


def test_model_copies_are_used_in_turn():
    from liveinference.sharing import ModelCopies

    copies = ModelCopies(["first", "second"])
    assert [copies.pick() for _ in range(5)] == ["first", "second", "first", "second", "first"]


def test_a_shared_model_answers_with_a_generators_items_and_passes_the_rest():
    from liveinference.sharing import SharedModel

    class Model:
        label = 3

        def predict(self, examples):
            return [example * 2 for example in examples]

        def predict_lazily(self, examples):
            return (example * 2 for example in examples)

        def __call__(self, examples):
            return (example + 1 for example in examples)

    shared = SharedModel(Model())
    assert shared.predict_lazily([1, 2]) == [2, 4] and shared([1, 2]) == [2, 3]
    assert shared.predict([1, 2]) == [2, 4] and shared.label == 3
    # The proxy offers the names the model has, so handlers call them as usual.
    assert {"predict", "predict_lazily", "label"} <= set(dir(shared))
