"""Where Beam's framework handlers are lenient, or refuse, ours do the same (issue 12 item 5).

Each test runs Beam's handler and ours on the same model and arguments, on this machine
(no CUDA here: a test that needs its absence is skipped where there is one):

- PyTorch: device='GPU' without a GPU logs and runs on the CPU; a device that is neither
  'CPU' nor 'GPU' runs on the CPU; a state dict and a TorchScript path together are
  refused with a RuntimeError (Beam takes no precedence at construction: its
  `_validate_constructor_args` refuses them), as is a model_class with a TorchScript path.
- Hugging Face: the same device rules for the tensor handlers; the pipeline handler falls
  back from 'GPU' to the CPU and refuses another device with a ValueError, as Beam's does.
  Beam 2.62's module imports `transformers.TFAutoModel`, which transformers 5 dropped; it
  uses the name in type hints only, so the test gives it `AutoModel` under that name to
  import it.
- TensorFlow: with ModelType.SAVED_MODEL a create_model_fn is ignored, and with
  SAVED_WEIGHTS custom_weights are: Beam's handler needs tensorflow_hub to import, so ours
  is compared with what Beam's loader does (`tf.keras.models.load_model`, then
  `load_weights(custom_weights)` if given), and with Beam's handler where tensorflow_hub is
  installed.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import importlib  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

import numpy  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from apache_beam.ml.inference import pytorch_inference as beam_pytorch  # noqa: E402

from liveinference.frameworks import huggingface as our_hf  # noqa: E402
from liveinference.frameworks import pytorch as our_pytorch  # noqa: E402
from liveinference.frameworks import tensorflow as our_tf  # noqa: E402

from refresh.framework_models import hf_tokenizer, keras_constant, save_hf  # noqa: E402

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


@pytest.fixture(scope="module")
def torch_paths(tmp_path_factory):
    torch.manual_seed(0)
    net = _Net().eval()
    root = tmp_path_factory.mktemp("lenient_torch")
    paths = {"state_dict": str(root / "net.pt"), "script": str(root / "net.torchscript")}
    torch.save(net.state_dict(), paths["state_dict"])
    torch.jit.script(net).save(paths["script"])
    return paths


def _predict(handler, batch):
    """Loads the model, returns (the inferences, the device its parameters are on)."""
    model = handler.load_model()
    results = list(handler.run_inference(batch, model))
    return torch.stack([r.inference for r in results]), next(model.parameters()).device


def _both_predict(torch_paths, **arguments):
    batch = [torch.ones(3), torch.arange(3.0)]
    beams = _predict(beam_pytorch.PytorchModelHandlerTensor(
        torch_paths["state_dict"], _Net, **arguments), batch)
    ours = _predict(our_pytorch.PytorchModelHandlerTensor(
        torch_paths["state_dict"], _Net, **arguments), batch)
    return beams, ours


@no_cuda
def test_pytorch_gpu_without_one_logs_and_runs_on_the_cpu_as_beam_does(torch_paths, caplog):
    with caplog.at_level(logging.WARNING):
        (beam_out, beam_device), (our_out, our_device) = _both_predict(torch_paths, device="GPU")
    assert beam_device.type == our_device.type == "cpu"
    assert torch.equal(beam_out, our_out)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("GPUs are not available" in line for line in warnings), "Beam's warning"
    assert any("CUDA is not available; running it on CPU" in line for line in warnings)


@pytest.mark.parametrize("device", ["cuda", "TPU"])
def test_pytorch_device_other_than_cpu_or_gpu_runs_on_the_cpu_as_beam_does(
    torch_paths, device
):
    (beam_out, beam_device), (our_out, our_device) = _both_predict(torch_paths, device=device)
    assert beam_device.type == our_device.type == "cpu"
    assert torch.equal(beam_out, our_out)


@pytest.mark.parametrize("arguments", [
    {"state_dict_path": "state", "model_class": _Net, "torch_script_model_path": "script"},
    {"state_dict_path": "state", "torch_script_model_path": "script"},
    {"model_class": _Net, "torch_script_model_path": "script"},
], ids=["state_dict_and_script", "state_dict_and_script_without_class", "class_and_script"])
@pytest.mark.parametrize("handler", ["PytorchModelHandlerTensor", "PytorchModelHandlerKeyedTensor"])
def test_pytorch_two_model_sources_are_refused_with_beams_runtime_error(
    torch_paths, arguments, handler
):
    given = {
        name: torch_paths["state_dict" if value == "state" else "script"]
        if isinstance(value, str) else value
        for name, value in arguments.items()
    }
    with pytest.raises(RuntimeError):
        getattr(beam_pytorch, handler)(**given)
    with pytest.raises(RuntimeError) as raised:
        getattr(our_pytorch, handler)(**given)
    assert isinstance(raised.value, ValueError), "and still the ValueError ours raised before"


# ---------------------------------------------------------------- Hugging Face


@pytest.fixture(scope="module")
def beam_hf():
    """Beam's huggingface_inference, imported with `TFAutoModel` (type hints only) named.

    Importing transformers' pipeline replaces the module in sys.modules, so the name is
    given to the module Beam's import will see.
    """
    from transformers import AutoModel, pipeline  # noqa: F401

    module = sys.modules["transformers"]
    if not hasattr(module, "TFAutoModel"):
        module.TFAutoModel = AutoModel
    return importlib.import_module("apache_beam.ml.inference.huggingface_inference")


@pytest.fixture(scope="module")
def hf_directory(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("lenient_hf") / "model")
    save_hf(path, 2, hf_tokenizer())
    return path


def _hf_logits(handler, examples):
    model = handler.load_model()
    return [r.inference["logits"] for r in handler.run_inference(examples, model)], model.device


@pytest.mark.parametrize("device", [
    pytest.param("GPU", marks=no_cuda), "TPU",
])
def test_huggingface_tensor_handlers_run_on_the_cpu_as_beams_do(beam_hf, hf_directory, device):
    examples = [{"input_ids": torch.tensor([2, 5, 3]), "attention_mask": torch.ones(3)}]
    model_class = transformers.AutoModelForSequenceClassification
    beams, beam_device = _hf_logits(beam_hf.HuggingFaceModelHandlerKeyedTensor(
        hf_directory, model_class, "pt", device=device), examples)
    ours, our_device = _hf_logits(our_hf.HuggingFaceModelHandlerKeyedTensor(
        hf_directory, model_class, "pt", device=device), examples)
    assert beam_device.type == our_device.type == "cpu"
    assert all(torch.allclose(b, o) for b, o in zip(beams, ours))


@no_cuda
def test_huggingface_pipeline_on_gpu_without_one_runs_on_the_cpu_as_beams_does(
    beam_hf, hf_directory
):
    beams = beam_hf.HuggingFacePipelineModelHandler(
        "text-classification", hf_directory, device="GPU")
    ours = our_hf.HuggingFacePipelineModelHandler(
        "text-classification", hf_directory, device="GPU")
    beam_pipeline, our_pipeline = beams.load_model(), ours.load_model()
    assert beam_pipeline.device.type == our_pipeline.device.type == "cpu"
    texts = ["row one", "the next row"]
    ours_labels = [r.inference["label"] for r in ours.run_inference(texts, our_pipeline)]
    # Beam 2.62 returns this transformers' nested answer as one result: compare the labels.
    beams_answer = [r.inference for r in beams.run_inference(texts, beam_pipeline)]
    beams_labels = [d["label"] for d in numpy.asarray(beams_answer, dtype=object).ravel()]
    assert beams_labels == ours_labels == ["two", "two"]


def test_huggingface_pipeline_refuses_another_device_as_beams_does(beam_hf, hf_directory):
    with pytest.raises(ValueError):
        beam_hf.HuggingFacePipelineModelHandler("text-classification", hf_directory, device="TPU")
    with pytest.raises(ValueError, match="device must be 'CPU' or 'GPU', got 'TPU'"):
        our_hf.HuggingFacePipelineModelHandler("text-classification", hf_directory, device="TPU")


def test_huggingface_missing_model_class_is_beams_runtime_error(beam_hf, hf_directory):
    with pytest.raises(RuntimeError):
        beam_hf.HuggingFaceModelHandlerTensor(hf_directory, None)
    with pytest.raises(RuntimeError, match="needs both model_uri"):
        our_hf.HuggingFaceModelHandlerTensor(hf_directory, None)


# ---------------------------------------------------------------- TensorFlow


@pytest.fixture(scope="module")
def keras_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("lenient_tf")
    paths = {"model": str(root / "one.keras"), "weights": str(root / "two.weights.h5")}
    keras_constant(1).save(paths["model"])
    keras_constant(2).save_weights(paths["weights"])
    return paths


def _tf_answer(handler):
    model = handler.load_model()
    [result] = handler.run_inference([numpy.zeros(4, numpy.float32)], model)
    return float(numpy.asarray(result.inference).reshape(-1)[0])


def _beams_tf_handler(path, model_type, **arguments):
    beam_tf = pytest.importorskip(
        "apache_beam.ml.inference.tensorflow_inference",
        reason="Beam's tensorflow_inference imports tensorflow_hub, which is not installed",
    )
    beam_type = getattr(beam_tf.ModelType, model_type.name)
    return beam_tf.TFModelHandlerNumpy(path, beam_type, **arguments)


@pytest.mark.parametrize("beams", ["beams_loader", "beams_handler"])
def test_tensorflow_saved_model_ignores_create_model_fn_as_beam_does(keras_paths, beams):
    arguments = {"create_model_fn": lambda: keras_constant(2)}
    ours = _tf_answer(our_tf.TFModelHandlerNumpy(
        keras_paths["model"], our_tf.ModelType.SAVED_MODEL, **arguments))
    if beams == "beams_loader":
        model = tf.keras.models.load_model(keras_paths["model"])
        expected = float(model(numpy.zeros((1, 4)))[0, 0])
    else:
        expected = _tf_answer(_beams_tf_handler(
            keras_paths["model"], our_tf.ModelType.SAVED_MODEL, **arguments))
    assert ours == expected == 1.0


@pytest.mark.parametrize("beams", ["beams_loader", "beams_handler"])
def test_tensorflow_saved_weights_ignore_custom_weights_as_beam_does(keras_paths, tmp_path, beams):
    other = str(tmp_path / "other.weights.h5")
    keras_constant(7).save_weights(other)
    arguments = {"create_model_fn": lambda: keras_constant(0), "custom_weights": other}
    ours = _tf_answer(our_tf.TFModelHandlerNumpy(
        keras_paths["weights"], our_tf.ModelType.SAVED_WEIGHTS, **arguments))
    if beams == "beams_loader":
        model = keras_constant(0)
        model.load_weights(keras_paths["weights"])
        expected = float(model(numpy.zeros((1, 4)))[0, 0])
    else:
        expected = _tf_answer(_beams_tf_handler(
            keras_paths["weights"], our_tf.ModelType.SAVED_WEIGHTS, **arguments))
    assert ours == expected == 2.0
