"""scikit-learn handlers against scikit-learn called directly."""

from __future__ import annotations

import pickle

import apache_beam as beam
import joblib
import numpy
import pandas
import pytest

from liveinference import InvalidExampleError, ModelLoadError, PredictionResult, RunInference
from liveinference.frameworks.sklearn import (
    ModelFileType,
    SklearnModelHandlerNumpy,
    SklearnModelHandlerPandas,
)


def _load(path: str):
    with open(path, "rb") as file:
        return pickle.load(file)


def test_numpy_handler_predicts_as_sklearn_does(run_pipeline, sklearn_model_path, dataset):
    x, _ = dataset
    rows = list(x[:50])
    out = run_pipeline(
        lambda p: {"results": p | beam.Create(rows) | RunInference(SklearnModelHandlerNumpy(sklearn_model_path))}
    )["results"]
    expected = _load(sklearn_model_path).predict(x[:50])
    got = {tuple(r.example): r.inference for r in out}
    assert len(out) == 50
    assert [got[tuple(row)] for row in x[:50]] == list(expected)
    assert {r.model_id for r in out} == {sklearn_model_path}


def test_joblib_file_loads_with_joblib_file_type(tmp_path, sklearn_model_path, dataset):
    x, _ = dataset
    path = str(tmp_path / "model.joblib")
    joblib.dump(_load(sklearn_model_path), path)
    handler = SklearnModelHandlerNumpy(path, ModelFileType.JOBLIB)
    model = handler.load_model()
    results = list(handler.run_inference(list(x[:5]), model))
    assert [r.inference for r in results] == list(_load(sklearn_model_path).predict(x[:5]))


def test_pandas_handler_predicts_one_row_frames(sklearn_model_path, dataset):
    x, _ = dataset
    handler = SklearnModelHandlerPandas(sklearn_model_path)
    frames = [pandas.DataFrame([row]) for row in x[:7]]
    results = list(handler.run_inference(frames, handler.load_model()))
    assert [r.inference for r in results] == list(_load(sklearn_model_path).predict(x[:7]))
    assert all(isinstance(r, PredictionResult) for r in results)


def test_pandas_handler_refuses_multi_row_frames(sklearn_model_path, dataset):
    x, _ = dataset
    handler = SklearnModelHandlerPandas(sklearn_model_path)
    with pytest.raises(InvalidExampleError, match="one-row DataFrame; got 3 rows"):
        handler.run_inference([pandas.DataFrame(x[:3])], handler.load_model())


def test_missing_model_file_names_the_path(tmp_path):
    missing = str(tmp_path / "nope.pkl")
    with pytest.raises(ModelLoadError, match="nope.pkl.*does not exist"):
        SklearnModelHandlerNumpy(missing).load_model()


def test_file_of_the_wrong_kind_says_what_was_expected(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(ModelLoadError, match="cannot read .*model.pkl.* as a pickle file"):
        SklearnModelHandlerNumpy(str(path)).load_model()


def test_pickle_without_predict_is_refused(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"not": "a model"}))
    with pytest.raises(ModelLoadError, match="holds a dict, which has no predict"):
        SklearnModelHandlerNumpy(str(path)).load_model()


def test_examples_of_the_wrong_width_name_the_expected_shape(sklearn_model_path):
    handler = SklearnModelHandlerNumpy(sklearn_model_path)
    with pytest.raises(InvalidExampleError, match=r"expects examples of shape \(4,\), got \(3,\)"):
        handler.run_inference([numpy.zeros(3)], handler.load_model())


def test_ragged_batch_names_the_shapes(sklearn_model_path):
    handler = SklearnModelHandlerNumpy(sklearn_model_path)
    with pytest.raises(InvalidExampleError, match=r"shapes \[\(3,\), \(4,\)\]"):
        handler.run_inference([numpy.zeros(4), numpy.zeros(3)], handler.load_model())


def test_inference_args_need_a_custom_inference_fn(sklearn_model_path):
    with pytest.raises(ValueError, match="takes no extra inference arguments"):
        RunInference(SklearnModelHandlerNumpy(sklearn_model_path), inference_args={"k": 1})

    def proba(model, batch, inference_args):
        return model.predict_proba(numpy.stack(batch))[:, inference_args["column"]]

    handler = SklearnModelHandlerNumpy(sklearn_model_path, inference_fn=proba)
    RunInference(handler, inference_args={"column": 1})
    results = list(handler.run_inference([numpy.zeros(4)], handler.load_model(), {"column": 1}))
    assert 0.0 < results[0].inference < 1.0


def test_unknown_handler_keyword_is_a_construction_error(sklearn_model_path):
    with pytest.raises(TypeError, match="max_batchsize"):
        SklearnModelHandlerNumpy(sklearn_model_path, max_batchsize=3)
