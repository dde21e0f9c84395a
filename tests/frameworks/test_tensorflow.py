"""TensorFlow handlers against the Keras model called directly."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import os
import pickle
from typing import Any, Dict

import apache_beam as beam
import numpy
import pytest

import tensorflow as tf  # noqa: E402

from liveinference import InvalidExampleError, ModelLoadError, RunInference  # noqa: E402
from liveinference.frameworks import tensorflow as tf_handlers  # noqa: E402
from liveinference.frameworks.tensorflow import (  # noqa: E402
    ModelType,
    SavedModelCallable,
    TFModelHandlerNumpy,
    TFModelHandlerTensor,
)

from beam_arguments import names_as_of_2_77  # noqa: E402

keras = tf.keras
CLASSES = 2


def build_model(width: int = 4, classes: int = CLASSES) -> Any:
    """The architecture every saved model here has; create_model_fn for saved weights."""
    return keras.Sequential([keras.Input((width,)), keras.layers.Dense(classes)])


def _trained(x: numpy.ndarray, y: numpy.ndarray) -> Any:
    model = build_model()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="sgd", loss=loss)
    model.fit(x, y, batch_size=len(x), epochs=2, verbose=0)
    return model


@dataclasses.dataclass(frozen=True)
class Saved:
    """A trained model, the same model in every format, and weights of a second model."""

    model: Any
    paths: Dict[str, str]
    other_model: Any
    other_weights: str


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, dataset: tuple) -> Saved:
    x, y = dataset
    root = tmp_path_factory.mktemp("tensorflow")
    model = _trained(x, y)
    paths = {
        "keras": str(root / "model.keras"),
        "h5": str(root / "model.h5"),
        "saved_model": str(root / "saved_model"),
        "export": str(root / "exported"),
        "weights": str(root / "model.weights.h5"),
    }
    model.save(paths["keras"])
    model.save(paths["h5"])
    tf.saved_model.save(model, paths["saved_model"])
    model.export(paths["export"], verbose=False)
    model.save_weights(paths["weights"])
    other = _trained(x, y)
    other.save_weights(str(root / "other.weights.h5"))
    return Saved(model, paths, other, str(root / "other.weights.h5"))


def _numpy_handler(saved: Saved, kind: str) -> TFModelHandlerNumpy:
    if kind == "weights":
        return TFModelHandlerNumpy(saved.paths[kind], ModelType.SAVED_WEIGHTS, build_model)
    return TFModelHandlerNumpy(saved.paths[kind])


def _inferences(results: Any) -> numpy.ndarray:
    return numpy.stack([numpy.asarray(result.inference) for result in results])


@pytest.mark.parametrize("kind", ["keras", "h5", "saved_model", "export", "weights"])
def test_each_format_predicts_as_the_keras_model_does(run_pipeline, saved, dataset, kind):
    x, _ = dataset
    rows = list(x[:20])
    handler = _numpy_handler(saved, kind)
    out = run_pipeline(
        lambda p: {"results": p | beam.Create(rows) | RunInference(handler)}
    )["results"]
    by_row = {tuple(result.example): result for result in out}
    assert len(out) == len(by_row) == 20
    ordered = [by_row[tuple(row)] for row in x[:20]]
    numpy.testing.assert_allclose(_inferences(ordered), saved.model(x[:20]), rtol=1e-5)
    assert {result.model_id for result in out} == {saved.paths[kind]}


def test_tensor_handler_predicts_tf_tensors_in_a_pipeline(run_pipeline, saved, dataset):
    x, _ = dataset
    tensors = [tf.constant(row, dtype=tf.float32) for row in x[:10]]
    handler = TFModelHandlerTensor(saved.paths["keras"])
    out = run_pipeline(
        lambda p: {"results": p | beam.Create(tensors) | RunInference(handler)}
    )["results"]
    by_row = {tuple(numpy.asarray(result.example)): result for result in out}
    ordered = [by_row[tuple(numpy.asarray(t))] for t in tensors]
    assert all(isinstance(result.inference, tf.Tensor) for result in ordered)
    numpy.testing.assert_allclose(_inferences(ordered), saved.model(tf.stack(tensors)), rtol=1e-5)


def test_saved_model_directory_is_called_through_its_serving_signature(saved, dataset):
    x, _ = dataset
    model = TFModelHandlerNumpy(saved.paths["saved_model"]).load_model()
    assert isinstance(model, SavedModelCallable)
    assert "serving_default" in model.loaded.signatures
    assert model.input_shape == (None, 4)
    float64_tensor = tf.constant(x[:3])
    assert float64_tensor.dtype == tf.float64
    numpy.testing.assert_allclose(model(float64_tensor), saved.model(x[:3]), rtol=1e-5)


def test_saved_module_without_signature_is_called_directly(tmp_path):
    class Doubler(tf.Module):
        @tf.function
        def __call__(self, batch):
            return batch * 2.0

    module = Doubler()
    module(tf.zeros((1, 2)))
    tf.saved_model.save(module, str(tmp_path), signatures={})
    handler = TFModelHandlerTensor(str(tmp_path))
    results = handler.run_inference([tf.constant([1.0, 2.0])], handler.load_model())
    numpy.testing.assert_array_equal(results[0].inference, [2.0, 4.0])


def test_signature_with_several_inputs_takes_the_others_from_inference_args(tmp_path):
    class Scaler(tf.Module):
        @tf.function(
            input_signature=[tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([], tf.float32)]
        )
        def serve(self, batch, scale):
            return {"scaled": batch * scale, "shifted": batch + scale}

    module = Scaler()
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
    handler = TFModelHandlerNumpy(str(tmp_path))
    model = handler.load_model()
    results = handler.run_inference([numpy.array([1.0, 2.0])], model, {"scale": tf.constant(3.0)})
    assert sorted(results[0].inference) == ["scaled", "shifted"]
    numpy.testing.assert_array_equal(results[0].inference["scaled"], [3.0, 6.0])
    numpy.testing.assert_array_equal(results[0].inference["shifted"], [4.0, 5.0])
    with pytest.raises(InvalidExampleError, match=r"takes inputs \['batch', 'scale'\]"):
        handler.run_inference([numpy.array([1.0, 2.0])], model)


def test_keras_only_load_args_do_not_break_saved_model_directories(saved, dataset):
    x, _ = dataset
    args = {"compile": False}
    for kind in ("keras", "saved_model"):
        handler = TFModelHandlerNumpy(saved.paths[kind], load_model_args=args)
        results = handler.run_inference(list(x[:2]), handler.load_model())
        numpy.testing.assert_allclose(_inferences(results), saved.model(x[:2]), rtol=1e-5)


def test_custom_weights_replace_the_loaded_weights(saved, dataset):
    x, _ = dataset
    handler = TFModelHandlerNumpy(saved.paths["keras"], custom_weights=saved.other_weights)
    results = handler.run_inference(list(x[:4]), handler.load_model())
    numpy.testing.assert_allclose(_inferences(results), saved.other_model(x[:4]), rtol=1e-5)
    assert not numpy.allclose(saved.model(x[:4]), saved.other_model(x[:4]))


def test_custom_weights_need_a_keras_model(saved):
    handler = TFModelHandlerNumpy(saved.paths["saved_model"], custom_weights=saved.other_weights)
    with pytest.raises(ModelLoadError, match="SavedModelCallable, which has no load_weights"):
        handler.load_model()


def test_saved_weights_without_create_model_fn_fail_at_construction(saved):
    with pytest.raises(ValueError, match="SAVED_WEIGHTS needs create_model_fn.*model.weights.h5"):
        TFModelHandlerTensor(saved.paths["weights"], ModelType.SAVED_WEIGHTS)


@pytest.mark.parametrize("model_type", [ModelType.SAVED_MODEL, ModelType.SAVED_WEIGHTS])
def test_missing_path_is_named(tmp_path, model_type):
    missing = str(tmp_path / "nope.keras")
    handler = TFModelHandlerNumpy(missing, model_type, build_model)
    with pytest.raises(ModelLoadError, match="nope.keras' does not exist"):
        handler.load_model()


def _pickle_file(directory: Any) -> str:
    path = directory / "model.pkl"
    path.write_bytes(pickle.dumps({"not": "a model"}))
    return str(path)


def _random_keras_file(directory: Any) -> str:
    path = directory / "model.keras"
    path.write_bytes(numpy.random.default_rng(0).bytes(64))
    return str(path)


def _directory_without_saved_model(directory: Any) -> str:
    (directory / "variables").mkdir()
    return str(directory)


@pytest.mark.parametrize(
    "make", [_pickle_file, _random_keras_file, _directory_without_saved_model]
)
def test_path_of_the_wrong_kind_lists_the_expected_formats(tmp_path, make):
    path = make(tmp_path)
    expected = r"\.keras` file, a legacy `\.h5` file or a SavedModel directory"
    with pytest.raises(ModelLoadError, match=expected) as info:
        TFModelHandlerNumpy(path).load_model()
    assert path in str(info.value)


def test_weights_that_do_not_fit_name_the_mismatch(saved):
    handler = TFModelHandlerNumpy(
        saved.paths["weights"], ModelType.SAVED_WEIGHTS, lambda: build_model(classes=5)
    )
    with pytest.raises(ModelLoadError, match=r"(?s)model.weights.h5.*variable.shape=\(4, 5\)"):
        handler.load_model()


def test_failing_create_model_fn_is_a_load_error(saved):
    def broken() -> Any:
        raise RuntimeError("no GPU here")

    handler = TFModelHandlerNumpy(saved.paths["weights"], ModelType.SAVED_WEIGHTS, broken)
    with pytest.raises(ModelLoadError, match="create_model_fn raised RuntimeError: no GPU here"):
        handler.load_model()


@pytest.mark.parametrize("kind", ["keras", "saved_model"])
def test_examples_of_the_wrong_shape_name_both_shapes(saved, kind):
    handler = TFModelHandlerNumpy(saved.paths[kind])
    with pytest.raises(InvalidExampleError, match=r"expects examples of shape \(4,\), got \(3,\)"):
        handler.run_inference([numpy.zeros(3), numpy.zeros(3)], handler.load_model())


def test_tensors_of_the_wrong_shape_name_both_shapes(saved):
    handler = TFModelHandlerTensor(saved.paths["keras"])
    expected = r"expects examples of shape \(4,\), got \(2, 2\)"
    with pytest.raises(InvalidExampleError, match=expected):
        handler.run_inference([tf.zeros((2, 2))], handler.load_model())


@pytest.mark.parametrize(
    "handler_type, make",
    [(TFModelHandlerNumpy, numpy.zeros), (TFModelHandlerTensor, tf.zeros)],
)
def test_ragged_batch_names_the_shapes(saved, handler_type, make):
    handler = handler_type(saved.paths["keras"])
    with pytest.raises(InvalidExampleError, match=r"shapes \[\(3,\), \(4,\)\]"):
        handler.run_inference([make(4), make(3)], handler.load_model())


def test_inference_args_reach_the_model_call(saved):
    seen: Dict[str, Any] = {}

    def model(batch: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return tf.zeros((len(batch), 1))

    handler = TFModelHandlerNumpy(saved.paths["keras"])
    RunInference(handler, inference_args={"training": False})
    handler.run_inference([numpy.zeros(4)], model, {"training": False})
    assert seen == {"training": False}


def test_several_outputs_give_each_example_all_of_them(dataset):
    x, _ = dataset
    inputs = keras.Input((4,))
    first, second = keras.layers.Dense(2)(inputs), keras.layers.Dense(1)(inputs)
    listed = keras.Model(inputs, [first, second])
    named = keras.Model(inputs, {"first": first, "second": second})
    handler = TFModelHandlerNumpy("in-memory")

    results = handler.run_inference(list(x[:3]), listed)
    assert len(results) == 3 and len(results[2].inference) == 2
    numpy.testing.assert_allclose(results[2].inference[1], listed(x[:3])[1][2], rtol=1e-6)

    results = handler.run_inference(list(x[:3]), named)
    assert sorted(results[1].inference) == ["first", "second"]
    first = named(x[:3])["first"][1]
    numpy.testing.assert_allclose(results[1].inference["first"], first, rtol=1e-6)


def test_update_model_path_loads_the_new_model_and_names_it(saved, dataset):
    x, _ = dataset
    handler = TFModelHandlerNumpy(saved.paths["keras"])
    handler.update_model_path(saved.paths["export"])
    results = handler.run_inference(list(x[:2]), handler.load_model())
    assert isinstance(handler.load_model(), SavedModelCallable)
    assert handler.get_model_id() == saved.paths["export"]
    assert {result.model_id for result in results} == {None}


def test_options_namespace_and_sizes(saved, monkeypatch):
    handler = TFModelHandlerTensor(
        saved.paths["keras"], min_batch_size=2, max_batch_size=8, model_copies=2,
        env_vars={"LIVEINFERENCE_TF_TEST": "set"},
    )
    assert handler.batch_elements_kwargs() == {"min_batch_size": 2, "max_batch_size": 8}
    assert handler.share_model_across_processes() and handler.model_copies() == 2
    monkeypatch.setenv("LIVEINFERENCE_TF_TEST", "unset")
    handler.set_environment_vars()
    assert os.environ["LIVEINFERENCE_TF_TEST"] == "set"
    assert handler.get_metrics_namespace() == "BeamML_TF_Tensor"
    assert handler.get_num_bytes([tf.zeros((3,)), tf.zeros((2, 2), tf.float64)]) == 12 + 32
    numpy_handler = TFModelHandlerNumpy(saved.paths["keras"])
    assert numpy_handler.get_metrics_namespace() == "BeamML_TF_Numpy"
    assert numpy_handler.get_num_bytes([numpy.zeros((5, 4))[0]]) == 32
    with pytest.raises(TypeError, match="max_batchsize"):
        TFModelHandlerNumpy(saved.paths["keras"], max_batchsize=3)


def _beam_parameters(function: ast.FunctionDef) -> Dict[str, Any]:
    """Parameter names by kind, with literal defaults, from Beam's source."""
    args = function.args
    positional = [arg.arg for arg in args.args]
    defaults = dict(zip(positional[len(positional) - len(args.defaults):], args.defaults))
    defaults.update(
        {arg.arg: value for arg, value in zip(args.kwonlyargs, args.kw_defaults) if value}
    )
    return {
        "positional": positional,
        "keyword_only": [a.arg for a in args.kwonlyargs],
        "var_keyword": args.kwarg.arg if args.kwarg else None,
        "defaults": {name: ast.unparse(value) for name, value in defaults.items()},
    }


def _our_parameters(function: Any) -> Dict[str, Any]:
    parameters = inspect.signature(function).parameters.values()
    kind = inspect.Parameter
    return {
        "positional": [p.name for p in parameters if p.kind == kind.POSITIONAL_OR_KEYWORD],
        "keyword_only": [p.name for p in parameters if p.kind == kind.KEYWORD_ONLY],
        "var_keyword": next((p.name for p in parameters if p.kind == kind.VAR_KEYWORD), None),
        "defaults": {p.name: p.default for p in parameters if p.default is not p.empty},
    }


def test_public_api_matches_beams_tensorflow_inference():
    spec = importlib.util.find_spec("apache_beam.ml.inference.tensorflow_inference")
    with open(spec.origin) as file:
        tree = ast.parse(file.read())
    top = {
        node.name: node
        for node in tree.body
        if isinstance(node, (ast.ClassDef, ast.FunctionDef))
    }
    members = [t.targets[0].id for t in top["ModelType"].body if isinstance(t, ast.Assign)]
    assert members == [member.name for member in ModelType]
    checked = {
        "TFModelHandlerNumpy.__init__": TFModelHandlerNumpy.__init__,
        "TFModelHandlerTensor.__init__": TFModelHandlerTensor.__init__,
        "default_numpy_inference_fn": tf_handlers.default_numpy_inference_fn,
        "default_tensor_inference_fn": tf_handlers.default_tensor_inference_fn,
    }
    for name, ours in checked.items():
        if "." in name:
            cls, method = name.split(".")
            node = next(n for n in top[cls].body if getattr(n, "name", None) == method)
        else:
            node = top[name]
        theirs, mine = _beam_parameters(node), _our_parameters(ours)
        if "." in name:
            theirs["keyword_only"] = names_as_of_2_77(theirs["keyword_only"])
        assert {k: theirs[k] for k in ("positional", "keyword_only", "var_keyword")} == {
            k: mine[k] for k in ("positional", "keyword_only", "var_keyword")
        }, name
        for param, source in theirs["defaults"].items():
            default = mine["defaults"][param]
            shown = default.__name__ if callable(default) else repr(default)
            assert source in (shown, f"ModelType.{getattr(default, 'name', '')}"), (name, param)
