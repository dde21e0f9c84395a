"""ONNX handler against scikit-learn and PyTorch called directly, and onnxruntime's errors."""

from __future__ import annotations

import inspect
import os
import pickle
import subprocess
import sys
import warnings

import apache_beam as beam
import numpy
import pytest

try:
    import torch
except ImportError:  # the Beam-latest test leg has no PyTorch
    torch = None
from apache_beam.ml.inference import onnx_inference as beam_onnx

import liveinference
from liveinference import InvalidExampleError, ModelLoadError, RunInference
from liveinference import onnx_inference as our_onnx
from liveinference.frameworks.onnx import OnnxModelHandlerNumpy

from beam_arguments import names_as_of_2_77


@pytest.fixture(scope="module")
def sklearn_model(dataset):
    from sklearn.linear_model import LogisticRegression

    x, y = dataset
    return LogisticRegression().fit(x.astype(numpy.float32), y)


@pytest.fixture(scope="module")
def sklearn_onnx_path(tmp_path_factory, sklearn_model, dataset):
    """The scikit-learn model converted with skl2onnx: outputs label, then probabilities."""
    from skl2onnx import to_onnx

    x, _ = dataset
    onx = to_onnx(sklearn_model, x[:1].astype(numpy.float32), options={"zipmap": False})
    path = tmp_path_factory.mktemp("onnx") / "classifier.onnx"
    path.write_bytes(onx.SerializeToString())
    return str(path)


@pytest.fixture(scope="module")
def torch_module():
    if torch is None:
        pytest.skip(reason="PyTorch is not installed in this venv (make test's Beam-latest "
                    "leg); the tests of ONNX models exported from PyTorch run in the Beam 2.62 leg")
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)).eval()


def _export(module, path, dynamic_batch=True, dynamic_features=False):
    axes = {0: "batch"} if dynamic_batch else {}
    if dynamic_features:
        axes[1] = "features"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (torch.zeros(2, 4),), str(path), input_names=["x"], output_names=["y"],
            dynamic_axes={"x": axes} if axes else None, dynamo=False,
        )
    return str(path)


@pytest.fixture(scope="module")
def torch_onnx_path(tmp_path_factory, torch_module):
    return _export(torch_module, tmp_path_factory.mktemp("onnx") / "mlp.onnx")


def _rows(dataset, count):
    x, _ = dataset
    return list(x[:count].astype(numpy.float32))


def test_handler_takes_beams_arguments():
    ours = list(inspect.signature(our_onnx.OnnxModelHandlerNumpy.__init__).parameters)
    beams = list(inspect.signature(beam_onnx.OnnxModelHandlerNumpy.__init__).parameters)
    assert ours == names_as_of_2_77(beams)
    assert our_onnx.OnnxModelHandlerNumpy is OnnxModelHandlerNumpy


def test_the_onnx_module_never_imports_beams_inference_package():
    code = (
        "import sys, liveinference.onnx_inference\n"
        "assert not [m for m in sys.modules if m.startswith('apache_beam.ml')]\n"
    )
    library = os.path.dirname(os.path.dirname(liveinference.__file__))
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": library})


def test_converted_sklearn_model_predicts_as_sklearn_does(run_pipeline, sklearn_onnx_path, sklearn_model, dataset):
    rows = _rows(dataset, 40)
    handler = OnnxModelHandlerNumpy(sklearn_onnx_path, max_batch_size=16)
    out = run_pipeline(lambda p: {"r": p | beam.Create(rows) | RunInference(handler)})["r"]
    expected = sklearn_model.predict(numpy.stack(rows))
    got = {tuple(r.example): r.inference for r in out}
    assert len(out) == 40
    assert [got[tuple(row)] for row in rows] == list(expected)
    assert {r.model_id for r in out} == {sklearn_onnx_path}


def test_exported_torch_module_predicts_as_torch_does(torch_onnx_path, torch_module, dataset):
    rows = _rows(dataset, 9)
    handler = OnnxModelHandlerNumpy(torch_onnx_path)
    results = list(handler.run_inference(rows, handler.load_model()))
    with torch.no_grad():
        expected = torch_module(torch.from_numpy(numpy.stack(rows))).numpy()
    numpy.testing.assert_allclose(numpy.stack([r.inference for r in results]), expected, rtol=1e-5, atol=1e-6)
    assert [r.example is row for r, row in zip(results, rows)] == [True] * 9


def test_default_providers_are_those_this_onnxruntime_has(torch_onnx_path):
    import onnxruntime

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session = OnnxModelHandlerNumpy(torch_onnx_path).load_model()
    assert "CPUExecutionProvider" in session.get_providers()
    assert not [w for w in caught if "provider" in str(w.message)]
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.warns(UserWarning, match="'CUDAExecutionProvider' is not in available provider names"):
            OnnxModelHandlerNumpy(torch_onnx_path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"]).load_model()


def test_session_options_and_providers_reach_the_session(torch_onnx_path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = OnnxModelHandlerNumpy(torch_onnx_path, options, ["CPUExecutionProvider"]).load_model()
    assert session.get_session_options().intra_op_num_threads == 1
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_custom_inference_fn_and_inference_args_reach_the_session(sklearn_onnx_path, sklearn_model, dataset):
    def probabilities(session, batch, inference_args):
        return session.run([inference_args["output"]], {"X": numpy.stack(batch)})[0][:, 1]

    handler = OnnxModelHandlerNumpy(sklearn_onnx_path, inference_fn=probabilities)
    RunInference(handler, inference_args={"output": "probabilities"})
    rows = _rows(dataset, 5)
    results = handler.run_inference(rows, handler.load_model(), {"output": "probabilities"})
    numpy.testing.assert_allclose(
        [r.inference for r in results], sklearn_model.predict_proba(numpy.stack(rows))[:, 1], atol=1e-5
    )


def test_update_model_path_loads_the_new_file_next(sklearn_onnx_path, torch_onnx_path, dataset):
    handler = OnnxModelHandlerNumpy(sklearn_onnx_path)
    handler.update_model_path(torch_onnx_path)
    results = list(handler.run_inference(_rows(dataset, 2), handler.load_model()))
    assert results[0].inference.shape == (2,) and handler.get_model_id() == torch_onnx_path
    assert results[0].model_id is None


def test_model_file_of_another_framework_is_named_and_explained(tmp_path, sklearn_model):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(sklearn_model))
    with pytest.raises(ModelLoadError, match=r"cannot load .*model\.pkl.* as an ONNX model.*looks like a Python pickle"):
        OnnxModelHandlerNumpy(str(path)).load_model()


def test_missing_model_file_names_the_path(tmp_path):
    with pytest.raises(ModelLoadError, match=r"nope\.onnx.*does not exist"):
        OnnxModelHandlerNumpy(str(tmp_path / "nope.onnx")).load_model()


def test_examples_of_the_wrong_width_name_the_expected_shape(torch_onnx_path):
    handler = OnnxModelHandlerNumpy(torch_onnx_path)
    with pytest.raises(InvalidExampleError, match=r"mlp\.onnx.*input 'x'.*expects examples of shape \(4,\), got \(3,\)"):
        handler.run_inference([numpy.zeros(3, numpy.float32)], handler.load_model())


def test_examples_of_the_wrong_dtype_say_how_to_convert(torch_onnx_path):
    handler = OnnxModelHandlerNumpy(torch_onnx_path)
    with pytest.raises(InvalidExampleError, match=r"expects float32 examples, got float64; .*astype\(numpy.float32\)"):
        handler.run_inference([numpy.zeros(4)], handler.load_model())


def test_ragged_batch_names_the_shapes(torch_onnx_path):
    handler = OnnxModelHandlerNumpy(torch_onnx_path)
    with pytest.raises(InvalidExampleError, match=r"shapes \[\(3,\), \(4,\)\]"):
        handler.run_inference([numpy.zeros(4, numpy.float32), numpy.zeros(3, numpy.float32)], handler.load_model())


def test_fixed_batch_size_model_says_how_to_batch(tmp_path, torch_module):
    path = _export(torch_module, tmp_path / "fixed.onnx", dynamic_batch=False)
    handler = OnnxModelHandlerNumpy(path)
    with pytest.raises(InvalidExampleError, match=r"batches of exactly 2, got 3.*min_batch_size=max_batch_size=2"):
        handler.run_inference([numpy.zeros(4, numpy.float32)] * 3, handler.load_model())


def test_shape_errors_only_onnxruntime_finds_name_the_input(tmp_path, torch_module):
    path = _export(torch_module, tmp_path / "symbolic.onnx", dynamic_features=True)
    handler = OnnxModelHandlerNumpy(path)
    with pytest.raises(
        InvalidExampleError,
        match=r"symbolic\.onnx.*cannot take examples of shape \(3,\) and dtype float32 \(it expects input 'x' of type tensor\(float\) and shape \['batch', 'features'\]\)",
    ):
        handler.run_inference([numpy.zeros(3, numpy.float32)], handler.load_model())


def test_bad_rows_go_to_dead_letters_and_the_rest_are_predicted(run_pipeline, torch_onnx_path, dataset):
    good = _rows(dataset, 20)
    bad = [numpy.zeros(3, numpy.float32), numpy.zeros(4)]
    handler = OnnxModelHandlerNumpy(torch_onnx_path, min_batch_size=22, max_batch_size=22)

    def build(p):
        results, dead = p | beam.Create(good + bad, reshuffle=False) | RunInference(handler).with_exception_handling()
        return {"results": results, "dead": dead.failed_inferences}

    out = run_pipeline(build)
    assert len(out["results"]) + len(out["dead"]) == 22
    assert sorted(tuple(r.example) for r in out["results"]) == sorted(tuple(row) for row in good)
    messages = sorted(record.message for record in out["dead"])
    assert "got (3,)" in messages[0] + messages[1] and "got float64" in messages[0] + messages[1]
    assert {record.stage for record in out["dead"]} == {"inference"}
    assert {record.exception_type for record in out["dead"]} == {"liveinference.errors.InvalidExampleError"}
