"""The configured transform with each handler family (PyTorch, TensorFlow, ONNX, XGBoost,
Hugging Face) and with a model per key: callables and model classes by qualified name,
framework outputs turned into typed Rows; every model is made by the test."""

from __future__ import annotations

import json

import apache_beam as beam
import numpy
import pytest

from conftest import csv, load
from xlang_framework_models import (
    write_onnx_classifier,
    write_tiny_text_classifier,
    write_xgboost_classifier,
)
from liveinference_expansion import ConfiguredRunInference, Policy, serving_policy

ALLOWED = Policy(allowed_modules=("liveinference_expansion.functions", "xlang_models"))
TABLES = Policy(allowed_modules=("liveinference_expansion.functions", "xlang_tables"))
TEXT = Policy(allowed_modules=("liveinference_expansion.functions", "xlang_text"))


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


def test_onnx_model_scores_parsed_rows(run_pipeline, models, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    x = models["x"][:6]
    path = tmp_path / "classifier.onnx"
    model = write_onnx_classifier(path, models["x"])
    transform = ConfiguredRunInference(
        "onnx_numpy", {"model_uri": str(path), "providers": ["CPUExecutionProvider"]},
        preprocess=["liveinference_expansion.functions.parse_csv_floats"],
        example_type="array<double>", inference_type="int64",
    )
    out = run_pipeline(lambda p: {"r": p | beam.Create(csv(x)) | transform})
    got = {tuple(row.example): (row.inference, row.model_id) for row in out["r"]}
    assert got == {tuple(float(v) for v in features): (int(label), str(path))
                   for features, label in zip(x, model.predict(x))}


@pytest.mark.parametrize("handler, preprocess", [
    ("xgboost_numpy", "xlang_tables.to_row_matrix"),
    ("xgboost_pandas", "xlang_tables.to_frame"),
    ("xgboost_scipy", "xlang_tables.to_sparse"),
    ("xgboost_datatable", "xlang_tables.to_datatable"),
])
def test_every_xgboost_handler_scores_its_table_kind(run_pipeline, models, tmp_path,
                                                     handler, preprocess):
    pytest.importorskip("xgboost")
    if handler == "xgboost_datatable":
        pytest.importorskip("datatable")
    x = models["x"][:6]
    path = tmp_path / "classifier.json"
    model = write_xgboost_classifier(path, models["x"])
    with serving_policy(TABLES):
        transform = ConfiguredRunInference(
            handler, {"model_class": "xgboost.XGBClassifier", "model_state": str(path)},
            preprocess=[preprocess], postprocess=["xlang_tables.example_as_floats"],
            example_type="array<double>", inference_type="int64",
        )
    out = run_pipeline(lambda p: {"r": p | beam.Create(csv(x)) | transform})
    got = {tuple(row.example): (row.inference, row.model_id) for row in out["r"]}
    assert got == {tuple(float(v) for v in features): (int(label), str(path))
                   for features, label in zip(x, model.predict(x))}


def test_huggingface_pipeline_classifies_text_as_json(run_pipeline, tmp_path):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model_dir = tmp_path / "tiny-bert"
    write_tiny_text_classifier(model_dir)
    texts = ["good movie", "awful plot", "great great plot"]
    transform = ConfiguredRunInference(
        "huggingface_pipeline",
        {"task": "text-classification", "model": str(model_dir), "device": "CPU"},
        example_type="string", inference_type="string",
    )
    out = run_pipeline(lambda p: {"r": p | beam.Create(texts) | transform})
    reference = transformers.pipeline("text-classification", model=str(model_dir), device="cpu")
    got = {row.example: json.loads(row.inference) for row in out["r"]}
    assert set(got) == set(texts)
    for text, expected in zip(texts, reference(texts)):
        assert got[text]["label"] == expected["label"]
        assert got[text]["score"] == pytest.approx(expected["score"], abs=1e-5)


@pytest.mark.parametrize("handler, preprocess, extra", [
    ("huggingface_tensor", "xlang_text.token_ids", {}),
    ("huggingface_keyed_tensor", "xlang_text.tokenize", {"framework": "pt"}),
])
def test_huggingface_model_scores_token_tensors(run_pipeline, tmp_path, handler, preprocess,
                                                extra):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import BertForSequenceClassification
    from xlang_text import token_ids

    model_dir = tmp_path / "tiny-bert"
    write_tiny_text_classifier(model_dir)
    texts = ["good movie", "awful plot", "great great plot", "bad"]
    with serving_policy(TEXT):
        transform = ConfiguredRunInference(
            handler,
            {"model_uri": str(model_dir),
             "model_class": "transformers.BertForSequenceClassification", **extra},
            preprocess=[preprocess], postprocess=["xlang_text.logits_label"],
            example_type="string", inference_type="int64",
        )
    out = run_pipeline(lambda p: {"r": p | beam.Create(texts) | transform})
    model = BertForSequenceClassification.from_pretrained(model_dir)
    ids = torch.stack([token_ids(text) for text in texts])
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=(ids != 0).long()
                         if handler.endswith("keyed_tensor") else None).logits.argmax(dim=1)
    got = {}
    for row in out["r"]:
        example = json.loads(row.example)
        got[tuple(example["input_ids"] if isinstance(example, dict) else example)] = (
            row.inference, row.model_id)
    assert got == {tuple(row.tolist()): (int(label), str(model_dir))
                   for row, label in zip(ids, expected)}


def test_huggingface_model_class_is_taken_from_transformers_only(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(PermissionError, match="'model_class' 'os.getcwd' is not in an allowed"):
        ConfiguredRunInference(
            "huggingface_tensor", {"model_uri": str(tmp_path), "model_class": "os.getcwd"},
        )
    with pytest.raises(ValueError, match="'transformers.pipeline' is not a class of transformers"):
        ConfiguredRunInference(
            "huggingface_tensor",
            {"model_uri": str(tmp_path), "model_class": "transformers.pipeline"},
        )


def test_a_model_per_key_from_plain_mappings(run_pipeline, models, tmp_path):
    """Keys "a" and "b" use a scikit-learn model, key "c" the flipped model in ONNX."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    flipped = tmp_path / "flipped.onnx"
    onnx_model = write_onnx_classifier(flipped, models["x"], flip=True)
    transform = ConfiguredRunInference(
        keyed=True, key_type="string",
        key_models=[
            {"keys": ["a", "b"], "handler": "sklearn_numpy",
             "handler_args": {"model_uri": str(models["v1"])}},
            {"keys": ["c"], "handler": "onnx_numpy",
             "handler_args": {"model_uri": str(flipped), "providers": ["CPUExecutionProvider"]}},
        ],
        max_models_per_worker_hint=1,
        preprocess=["liveinference_expansion.functions.parse_csv_floats"],
        example_type="array<double>", inference_type="int64",
    )
    x = models["x"][:6]
    keys = ["a", "b", "c", "c", "a", "c"]
    out = run_pipeline(lambda p: {"r": p | beam.Create(list(zip(keys, csv(x)))) | transform})
    sklearn_model = load(models["v1"])
    expected = {
        (key, tuple(float(v) for v in row)): (
            int((onnx_model if key == "c" else sklearn_model).predict(row[None])[0]),
            str(flipped if key == "c" else models["v1"]),
        )
        for key, row in zip(keys, x)
    }
    got = {(key, tuple(row.example)): (row.inference, row.model_id) for key, row in out["r"]}
    assert got == expected


def test_per_key_mapping_errors_name_the_mapping(models):
    with pytest.raises(ValueError, match=r"key_models\[1\]: unknown handler 'no_such'.*onnx_numpy"):
        ConfiguredRunInference(
            keyed=True,
            key_models=[{"keys": ["a"], "handler": "sklearn_numpy",
                         "handler_args": {"model_uri": str(models["v1"])}},
                        {"keys": ["b"], "handler": "no_such"}],
        )
    with pytest.raises(ValueError, match="with keyed=True, key_models"):
        ConfiguredRunInference(key_models=[{"keys": ["a"], "handler": "sklearn_numpy"}])
    with pytest.raises(TypeError, match=r"key_models\[0\]\['keys'\] must be a non-empty list"):
        ConfiguredRunInference(keyed=True, key_models=[{"keys": [], "handler": "sklearn_numpy"}])


def test_every_handler_name_builds_a_liveinference_handler_class():
    """The one list of names (the service's refusals and --list-handlers read it) names
    importable liveinference handlers under Beam's module paths."""
    import importlib

    from liveinference import ModelHandler
    from liveinference_expansion.handlers import HANDLERS, describe_handlers

    for name, (module, cls) in HANDLERS.items():
        handler_class = getattr(importlib.import_module(module), cls)
        assert issubclass(handler_class, ModelHandler), name
    assert describe_handlers()[0] == (
        "huggingface_keyed_tensor: "
        "liveinference.huggingface_inference.HuggingFaceModelHandlerKeyedTensor"
    )
    assert len(describe_handlers()) == len(HANDLERS) == 16


def test_unknown_handler_refusal_lists_every_name():
    with pytest.raises(ValueError, match="unknown handler 'onnx'; this service knows") as error:
        ConfiguredRunInference("onnx")
    for name in ("onnx_numpy", "xgboost_datatable", "huggingface_pipeline", "sklearn_numpy"):
        assert repr(name) in str(error.value)
