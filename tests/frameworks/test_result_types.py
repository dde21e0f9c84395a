"""Each example's inference is the matching row of the model's output, of the type Beam gives.

A model output of shape (N, k) becomes N inferences of shape (k,); the batch's output is
split once, not indexed row by row. Beam's handler and ours run on the same batch.
"""

from __future__ import annotations

import pickle

import numpy
import pytest
import torch
import xgboost
from apache_beam.ml.inference import pytorch_inference as beam_pytorch
from apache_beam.ml.inference import sklearn_inference as beam_sklearn
from apache_beam.ml.inference import xgboost_inference as beam_xgboost

from liveinference.frameworks import pytorch, sklearn
from liveinference.frameworks import xgboost as ours_xgboost

ROWS, FEATURES, OUTPUTS = 5, 4, 3


def _inferences(handler, batch):
    return [result.inference for result in handler.run_inference(batch, handler.load_model())]


def _same_rows(ours, beams, expected):
    assert len(ours) == len(beams) == len(expected)
    for mine, theirs, row in zip(ours, beams, expected):
        assert type(mine) is type(theirs)
        assert tuple(mine.shape) == tuple(theirs.shape) == tuple(row.shape)
        numpy.testing.assert_allclose(numpy.asarray(mine), numpy.asarray(theirs))
        numpy.testing.assert_allclose(numpy.asarray(mine), numpy.asarray(row))


@pytest.fixture(scope="module")
def rows():
    return numpy.random.default_rng(0).normal(size=(ROWS, FEATURES)).astype(numpy.float32)


def test_pytorch_output_of_n_by_k_gives_tensors_of_shape_k(tmp_path, rows):
    torch.manual_seed(0)
    net = torch.nn.Linear(FEATURES, OUTPUTS)
    path = str(tmp_path / "linear.pt")
    torch.save(net.state_dict(), path)
    arguments = dict(
        state_dict_path=path,
        model_class=torch.nn.Linear,
        model_params={"in_features": FEATURES, "out_features": OUTPUTS},
    )
    batch = [torch.from_numpy(row) for row in rows]
    with torch.no_grad():
        expected = list(net(torch.from_numpy(rows)))
    ours = _inferences(pytorch.PytorchModelHandlerTensor(**arguments), batch)
    beams = _inferences(beam_pytorch.PytorchModelHandlerTensor(**arguments), batch)
    _same_rows(ours, beams, expected)
    assert all(isinstance(inference, torch.Tensor) for inference in ours)
    assert all(inference.shape == (OUTPUTS,) for inference in ours)


def test_sklearn_probabilities_of_n_by_k_give_arrays_of_shape_k(tmp_path, rows):
    from sklearn.linear_model import LogisticRegression

    labels = numpy.arange(ROWS * 4) % OUTPUTS
    model = LogisticRegression().fit(numpy.tile(rows, (4, 1)), labels)
    path = str(tmp_path / "model.pkl")
    with open(path, "wb") as file:
        pickle.dump(model, file)

    def probabilities(model, batch, inference_args=None):
        return model.predict_proba(numpy.stack(batch))

    batch = list(rows)
    ours = _inferences(sklearn.SklearnModelHandlerNumpy(path, inference_fn=probabilities), batch)
    beams = _inferences(
        beam_sklearn.SklearnModelHandlerNumpy(path, inference_fn=probabilities), batch
    )
    _same_rows(ours, beams, list(model.predict_proba(rows)))
    assert all(type(inference) is numpy.ndarray for inference in ours)


def test_xgboost_predictions_keep_beams_values_and_types(tmp_path, rows):
    model = xgboost.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1)
    model.fit(numpy.tile(rows, (4, 1)), numpy.arange(ROWS * 4) % 2)
    path = str(tmp_path / "model.json")
    model.save_model(path)
    batch = [row.reshape(1, -1) for row in rows]
    arguments = dict(model_class=xgboost.XGBClassifier, model_state=path)
    ours = _inferences(ours_xgboost.XGBoostModelHandlerNumpy(**arguments), batch)
    beams = _inferences(beam_xgboost.XGBoostModelHandlerNumpy(**arguments), batch)
    assert len(ours) == len(beams) == ROWS
    for mine, theirs in zip(ours, beams):
        assert type(mine) is type(theirs)
        numpy.testing.assert_array_equal(mine, theirs)
