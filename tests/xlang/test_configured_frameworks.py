"""The configured transform with the PyTorch and TensorFlow handlers: callables and model
classes by qualified name, tensors turned into typed Rows."""

from __future__ import annotations

import apache_beam as beam
import numpy
import pytest

from conftest import csv
from liveinference_expansion import ConfiguredRunInference, Policy, serving_policy

ALLOWED = Policy(allowed_modules=("liveinference_expansion.functions", "xlang_models"))


def test_pytorch_state_dict_with_model_class_by_name(run_pipeline, models, tmp_path):
    torch = pytest.importorskip("torch")
    from xlang_models import TinyNet

    torch.manual_seed(0)
    net = TinyNet()
    torch.save(net.state_dict(), tmp_path / "net.pt")
    with serving_policy(ALLOWED):
        transform = ConfiguredRunInference(
            "pytorch_tensor",
            {"state_dict_path": str(tmp_path / "net.pt"), "model_class": "xlang_models.TinyNet",
             "model_params": {"outputs": 2}},
            preprocess=["xlang_models.to_tensor"],
            postprocess=["liveinference_expansion.functions.argmax_inference"],
            example_type="array<float>", inference_type="int64",
        )
    x = models["x"][:5]
    out = run_pipeline(lambda p: {"r": p | beam.Create(csv(x)) | transform})
    with torch.no_grad():
        expected = net(torch.tensor(x, dtype=torch.float32)).argmax(dim=1).tolist()
    by_example = {tuple(round(v, 5) for v in row.example): row.inference for row in out["r"]}
    assert by_example == {tuple(round(float(v), 5) for v in row): label
                          for row, label in zip(x, expected)}


def test_pytorch_model_class_outside_the_allowed_modules_is_refused(tmp_path):
    pytest.importorskip("torch")
    with pytest.raises(PermissionError, match="'model_class' 'xlang_models.TinyNet' is not in"):
        ConfiguredRunInference(
            "pytorch_tensor",
            {"state_dict_path": str(tmp_path), "model_class": "xlang_models.TinyNet"},
        )


def test_tensorflow_keras_model_scores_as_arrays(run_pipeline, models, tmp_path):
    tf = pytest.importorskip("tensorflow")
    inputs = tf.keras.Input(shape=(4,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(inputs))
    path = tmp_path / "model.keras"
    model.save(path)
    transform = ConfiguredRunInference(
        "tf_numpy", {"model_uri": str(path)},
        preprocess=["liveinference_expansion.functions.parse_csv_floats"],
        example_type="array<double>", inference_type="array<float>",
    )
    x = models["x"][:4]
    out = run_pipeline(lambda p: {"r": p | beam.Create(csv(x)) | transform})
    expected = model.predict(x, verbose=0)
    got = {tuple(row.example): row.inference for row in out["r"]}
    for features, scores in zip(x, expected):
        assert numpy.allclose(got[tuple(features)], scores, atol=1e-5)
