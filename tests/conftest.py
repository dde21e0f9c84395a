"""Fixtures: tiny real models that the tests train and save, and a pipeline runner."""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys
from typing import Any, Callable, Dict

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from liveinference.testing import Collect, read_collected  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# TensorFlow and Triton (which PyTorch imports lazily, e.g. from torch.optim) both link LLVM;
# loading Triton after TensorFlow aborts the process ("Option ... registered more than once").
# The PyTorch and TensorFlow tests share this process, so Triton loads first.
if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401

from pipeline_helpers import FEATURES, make_dataset  # noqa: E402


@pytest.fixture(scope="session")
def dataset() -> tuple:
    return make_dataset()


@pytest.fixture(scope="session")
def sklearn_model_path(tmp_path_factory: pytest.TempPathFactory, dataset: tuple) -> str:
    """A LogisticRegression trained here and pickled to disk."""
    from sklearn.linear_model import LogisticRegression

    x, y = dataset
    model = LogisticRegression().fit(x, y)
    path = tmp_path_factory.mktemp("sklearn") / "model.pkl"
    with open(path, "wb") as file:
        pickle.dump(model, file)
    return str(path)


@pytest.fixture
def run_pipeline(tmp_path: Any) -> Callable[..., Dict[str, list]]:
    """Builds a pipeline with `build(pipeline) -> {name: pcoll}`, runs it, returns outputs.

    The pipeline result is available as `run_pipeline.result` after a call.
    """
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    def run(build: Callable[[Any], Dict[str, Any]], **options: Any) -> Dict[str, list]:
        pipeline = beam.Pipeline(options=PipelineOptions(**options))
        outputs = build(pipeline)
        for name, pcoll in outputs.items():
            _ = pcoll | f"Collect{name}" >> Collect(str(tmp_path / "out" / name))
        result = pipeline.run()
        result.wait_until_finish()
        run.result = result  # type: ignore[attr-defined]
        return {name: read_collected(str(tmp_path / "out" / name)) for name in outputs}

    return run
