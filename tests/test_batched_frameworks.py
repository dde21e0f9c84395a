"""Every framework handler scores batch elements as it scores the same rows one by one, or
says when the pipeline is built why it cannot."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import numpy
import pyarrow
import pytest
from pipeline_helpers import FEATURES, make_dataset

from liveinference import KeyedModelHandler, RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.testing import ConstantModelHandler, write_constant_model

NAMES = [f"f{index}" for index in range(FEATURES)]
_NO_TORCH = ("PyTorch is not installed in this venv (make test's Beam-latest leg); the PyTorch "
             "cases run in the Beam 2.62 leg")
ROWS = 30


def _scored_both_ways(run_pipeline, handler, to_example, x):
    """Runs the rows through RunInference per row and as two batch elements; returns the
    per-row inferences and the batch inferences, both in row order."""
    table = pyarrow.table({"id": numpy.arange(len(x)), **{n: x[:, i] for i, n in enumerate(NAMES)}})

    def build(p):
        per_row = (p | "Rows" >> beam.Create([(i, to_example(row)) for i, row in enumerate(x)])
                   | "Keyed" >> RunInference(KeyedModelHandler(handler)))
        batches = p | "Batches" >> beam.Create([table.slice(0, 12), table.slice(12)])
        return {"rows": per_row, "batches": batches | "OnBatches" >> RunInference(
            handler).on_batches(feature_columns=NAMES)}

    out = run_pipeline(build)
    rows = [numpy.asarray(result.inference).tolist()
            for _, result in sorted(out["rows"], key=lambda pair: pair[0])]
    joined = pyarrow.concat_tables(out["batches"]).sort_by("id")
    assert joined.num_rows == len(x)
    return rows, joined.column("inference").to_pylist()


def test_pytorch_batches_match_its_rows(run_pipeline, tmp_path):
    torch = pytest.importorskip("torch", reason=_NO_TORCH)

    from liveinference.frameworks.pytorch import PytorchModelHandlerTensor

    torch.manual_seed(0)
    path = str(tmp_path / "linear.pt")
    torch.save(torch.nn.Linear(FEATURES, 2).state_dict(), path)
    handler = PytorchModelHandlerTensor(path, torch.nn.Linear,
                                        {"in_features": FEATURES, "out_features": 2})
    x, _ = make_dataset(rows=ROWS, seed=7)  # float64: the batch is cast to the model's float32
    rows, batched = _scored_both_ways(
        run_pipeline, handler, lambda row: torch.tensor(row, dtype=torch.float32), x)
    numpy.testing.assert_allclose(batched, rows, rtol=1e-6)


def test_onnx_batches_match_its_rows(run_pipeline, tmp_path):
    from xlang.xlang_framework_models import write_onnx_classifier

    from liveinference.frameworks.onnx import OnnxModelHandlerNumpy

    x, _ = make_dataset(rows=ROWS, seed=8)
    write_onnx_classifier(tmp_path / "model.onnx", x)
    rows, batched = _scored_both_ways(
        run_pipeline, OnnxModelHandlerNumpy(str(tmp_path / "model.onnx")), lambda row: row, x)
    assert batched == rows


def test_xgboost_batches_match_its_rows(run_pipeline, tmp_path):
    import xgboost

    from liveinference.frameworks.xgboost import XGBoostModelHandlerNumpy

    x, y = make_dataset(rows=ROWS, seed=9)
    model = xgboost.XGBClassifier(n_estimators=4, max_depth=2).fit(x, y)
    model.save_model(str(tmp_path / "model.json"))
    handler = XGBoostModelHandlerNumpy(xgboost.XGBClassifier, str(tmp_path / "model.json"))
    rows, batched = _scored_both_ways(run_pipeline, handler, lambda row: row.reshape(1, -1), x)
    assert batched == [value for row in rows for value in row]  # an example is a 1-row table


def test_a_handler_of_plain_rows_gets_the_rows_as_its_examples(run_pipeline, tmp_path):
    handler = ConstantModelHandler(write_constant_model(str(tmp_path / "model.txt"), 7))
    x, _ = make_dataset(rows=ROWS, seed=10)
    rows, batched = _scored_both_ways(run_pipeline, handler, lambda row: row, x)
    assert batched == rows == [7] * ROWS


def test_keyed_handlers_are_refused_saying_why(sklearn_model_path):
    with pytest.raises(TypeError, match="pairs each example with a key"):
        RunInference(KeyedModelHandler(SklearnModelHandlerNumpy(sklearn_model_path))).on_batches()


def test_keyed_tensor_handlers_are_refused_saying_why(tmp_path: Path):
    torch = pytest.importorskip("torch", reason=_NO_TORCH)

    from liveinference.frameworks.pytorch import PytorchModelHandlerKeyedTensor

    handler = PytorchModelHandlerKeyedTensor(str(tmp_path / "none.pt"), torch.nn.Linear)
    with pytest.raises(TypeError, match="dicts of named tensors, not rows of a table"):
        RunInference(handler).on_batches()
