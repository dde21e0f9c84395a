"""PyTorch handlers against the same PyTorch models called directly."""

from __future__ import annotations

import inspect
import logging
import os
from typing import Callable

import apache_beam as beam
import pytest
import torch

from liveinference import InvalidExampleError, ModelLoadError, RunInference
from liveinference.frameworks import pytorch
from liveinference.frameworks.pytorch import (
    PytorchModelHandlerKeyedTensor,
    PytorchModelHandlerTensor,
    make_keyed_tensor_model_fn,
    make_tensor_model_fn,
)

from beam_arguments import kinds_as_of_2_77

HIDDEN = 8


class _Net(torch.nn.Module):
    """Two layers and a dropout, so a model left in training mode gives different outputs."""

    def __init__(self, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.first = torch.nn.Linear(4, hidden)
        self.drop = torch.nn.Dropout(0.5)
        self.second = torch.nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return self.second(self.drop(torch.relu(self.first(x)))) * scale

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.forward(x), dim=1)


class _TwoInputs(torch.nn.Module):
    """Takes its inputs by name: `features` (4 values) and `offset` (1 value)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, features: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        return self.linear(features) + offset

    def halved(self, features: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        return self.forward(features, offset) / 2


def _trained(model: torch.nn.Module, dataset: tuple, inputs: Callable) -> torch.nn.Module:
    x, y = dataset
    features = torch.tensor(x, dtype=torch.float32)
    labels = torch.tensor(y)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(5):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(**inputs(features)), labels).backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def net(dataset) -> _Net:
    torch.manual_seed(0)
    return _trained(_Net(), dataset, lambda f: {"x": f})


@pytest.fixture(scope="module")
def two_inputs(dataset) -> _TwoInputs:
    torch.manual_seed(1)
    return _trained(_TwoInputs(), dataset, lambda f: {"features": f, "offset": f[:, :1]})


@pytest.fixture(scope="module")
def state_dict_path(tmp_path_factory, net) -> str:
    path = str(tmp_path_factory.mktemp("pytorch") / "net.pt")
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def torch_script_path(tmp_path_factory, net) -> str:
    path = str(tmp_path_factory.mktemp("pytorch") / "net.torchscript")
    torch.jit.save(torch.jit.script(net), path)
    return path


@pytest.fixture
def examples(dataset) -> list:
    x, _ = dataset
    return list(torch.tensor(x[:20], dtype=torch.float32))


def _handler(path: str, **kwargs) -> PytorchModelHandlerTensor:
    return PytorchModelHandlerTensor(path, _Net, {"hidden": HIDDEN}, **kwargs)


def _by_example(results) -> dict:
    return {tuple(r.example.tolist()): r for r in results}


def test_state_dict_handler_predicts_as_torch_does(run_pipeline, state_dict_path, net, examples):
    out = run_pipeline(
        lambda p: {"results": p | beam.Create(examples) | RunInference(_handler(state_dict_path))}
    )["results"]
    expected = net(torch.stack(examples))
    got = _by_example(out)
    assert len(out) == len(examples)
    for example, row in zip(examples, expected):
        assert torch.allclose(got[tuple(example.tolist())].inference, row)
    assert {r.model_id for r in out} == {state_dict_path}


def test_torch_script_handler_predicts_as_torch_does(
    run_pipeline, torch_script_path, net, examples
):
    handler = PytorchModelHandlerTensor(torch_script_model_path=torch_script_path)
    out = run_pipeline(
        lambda p: {"results": p | beam.Create(examples) | RunInference(handler)}
    )["results"]
    got = _by_example(out)
    for example, row in zip(examples, net(torch.stack(examples))):
        assert torch.allclose(got[tuple(example.tolist())].inference, row)
    assert {r.model_id for r in out} == {torch_script_path}


def test_keyed_handler_stacks_each_key_and_passes_it_by_name(
    run_pipeline, tmp_path, two_inputs, examples
):
    path = str(tmp_path / "two_inputs.pt")
    torch.save(two_inputs.state_dict(), path)
    keyed = [{"features": e, "offset": e[:1]} for e in examples]
    handler = PytorchModelHandlerKeyedTensor(path, _TwoInputs)
    out = run_pipeline(lambda p: {"results": p | beam.Create(keyed) | RunInference(handler)})[
        "results"
    ]
    got = {tuple(r.example["features"].tolist()): r.inference for r in out}
    expected = two_inputs(torch.stack(examples), torch.stack([e[:1] for e in examples]))
    assert len(out) == len(examples)
    for example, row in zip(examples, expected):
        assert torch.allclose(got[tuple(example.tolist())], row)


def test_inference_args_reach_forward(state_dict_path, net, examples):
    handler = _handler(state_dict_path)
    RunInference(handler, inference_args={"scale": 3.0})
    results = handler.run_inference(examples[:3], handler.load_model(), {"scale": 3.0})
    expected = net(torch.stack(examples[:3])) * 3.0
    assert torch.allclose(torch.stack([r.inference for r in results]), expected)


def test_model_fns_call_the_named_method(state_dict_path, tmp_path, net, two_inputs, examples):
    handler = _handler(state_dict_path, inference_fn=make_tensor_model_fn("probabilities"))
    results = handler.run_inference(examples[:3], handler.load_model())
    expected = net.probabilities(torch.stack(examples[:3]))
    assert torch.allclose(torch.stack([r.inference for r in results]), expected)

    path = str(tmp_path / "two_inputs.pt")
    torch.save(two_inputs.state_dict(), path)
    keyed = PytorchModelHandlerKeyedTensor(
        path, _TwoInputs, inference_fn=make_keyed_tensor_model_fn("halved")
    )
    batch = [{"features": e, "offset": e[:1]} for e in examples[:3]]
    results = keyed.run_inference(batch, keyed.load_model())
    offsets = torch.stack([e[:1] for e in examples[:3]])
    expected = two_inputs.halved(torch.stack(examples[:3]), offsets)
    assert torch.allclose(torch.stack([r.inference for r in results]), expected)


def test_model_runs_in_eval_mode_without_gradients(state_dict_path, examples):
    seen = {}

    def record(batch, model, device, inference_args, model_id):
        seen.update(grad=torch.is_grad_enabled(), training=model.training, device=device)
        return pytorch.default_tensor_inference_fn(batch, model, device, inference_args, model_id)

    handler = _handler(state_dict_path, inference_fn=record)
    first = handler.run_inference(examples[:4], handler.load_model())
    second = handler.run_inference(examples[:4], handler.load_model())
    assert seen == {"grad": False, "training": False, "device": torch.device("cpu")}
    assert not first[0].inference.requires_grad
    assert all(torch.equal(a.inference, b.inference) for a, b in zip(first, second))


def test_default_fns_alone_compute_no_gradients(torch_script_path, examples):
    model = PytorchModelHandlerTensor(torch_script_model_path=torch_script_path).load_model()
    assert all(p.requires_grad for p in model.parameters())
    results = pytorch.default_tensor_inference_fn(examples[:2], model, "cpu")
    assert not results[0].inference.requires_grad


def test_gpu_without_cuda_falls_back_to_cpu(monkeypatch, caplog, state_dict_path, net, examples):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    handler = _handler(state_dict_path, device="gpu")
    with caplog.at_level(logging.WARNING, logger=pytorch.__name__):
        model = handler.load_model()
    assert "CUDA is not available" in caplog.text and state_dict_path in caplog.text
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    results = handler.run_inference(examples[:3], model)
    expected = net(torch.stack(examples[:3]))
    assert torch.allclose(torch.stack([r.inference for r in results]), expected)


def test_gpu_that_refuses_the_model_falls_back_to_cpu(monkeypatch, caplog, torch_script_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real_to = torch.nn.Module.to

    def refuse_cuda(module, *args, **kwargs):
        if any(torch.device(a).type == "cuda" for a in args if isinstance(a, (str, torch.device))):
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_to(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", refuse_cuda)
    handler = PytorchModelHandlerTensor(torch_script_model_path=torch_script_path, device="GPU")
    with caplog.at_level(logging.WARNING, logger=pytorch.__name__):
        model = handler.load_model()
    assert "cannot move model" in caplog.text and "simulated" in caplog.text
    assert {p.device.type for p in model.parameters()} == {"cpu"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_device_runs_the_model_on_cuda(state_dict_path, net, examples):
    handler = _handler(state_dict_path, device="GPU")
    model = handler.load_model()
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    results = handler.run_inference(examples[:3], model)
    got = torch.stack([r.inference.cpu() for r in results])
    assert torch.allclose(got, net(torch.stack(examples[:3])), atol=1e-5)


def test_update_model_path_loads_and_names_the_new_model(tmp_path, state_dict_path, net, examples):
    torch.manual_seed(7)
    other = _Net()
    other_path = str(tmp_path / "other.pt")
    torch.save(other.state_dict(), other_path)
    handler = _handler(state_dict_path)
    handler.update_model_path(other_path)
    results = handler.run_inference(examples[:2], handler.load_model())
    assert handler.get_model_id() == other_path
    assert {r.model_id for r in results} == {None}
    assert torch.allclose(results[0].inference, other.eval()(examples[0][None])[0])

    script_path = str(tmp_path / "other.torchscript")
    torch.jit.save(torch.jit.script(other), script_path)
    scripted = PytorchModelHandlerTensor(torch_script_model_path=state_dict_path)
    scripted.update_model_path(script_path)
    results = scripted.run_inference(examples[:1], scripted.load_model())
    assert scripted.get_model_id() == script_path and results[0].model_id is None


def test_missing_model_file_names_the_path(tmp_path):
    with pytest.raises(ModelLoadError, match="nope.pt.*does not exist"):
        _handler(str(tmp_path / "nope.pt")).load_model()
    handler = PytorchModelHandlerTensor(torch_script_model_path=str(tmp_path / "nope.ts"))
    with pytest.raises(ModelLoadError, match="nope.ts.*does not exist"):
        handler.load_model()


def test_garbage_file_says_a_state_dict_was_expected(tmp_path):
    path = tmp_path / "net.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="cannot read .*net.pt.* as a PyTorch state dict"):
        _handler(str(path)).load_model()


@pytest.mark.filterwarnings("ignore:'torch.load' received a zip file")
@pytest.mark.parametrize("load_model_args", [{}, {"weights_only": False}])
def test_torch_script_file_given_as_state_dict_points_to_torch_script_model_path(
    torch_script_path, load_model_args
):
    # torch.load refuses a TorchScript file with weights_only=True, else returns a ScriptModule.
    handler = _handler(torch_script_path, load_model_args=load_model_args)
    with pytest.raises(ModelLoadError, match="net.torchscript.*pass it as torch_script_model_path"):
        handler.load_model()


def test_state_dict_given_as_torch_script_says_torch_script_was_expected(state_dict_path):
    handler = PytorchModelHandlerTensor(torch_script_model_path=state_dict_path)
    with pytest.raises(ModelLoadError, match="cannot read .*net.pt.* as a TorchScript model"):
        handler.load_model()


def test_saved_object_that_is_not_a_mapping_is_refused(tmp_path):
    path = str(tmp_path / "list.pt")
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ModelLoadError, match="holds a list, not a state dict"):
        _handler(path).load_model()


def test_state_dict_of_another_shape_names_the_mismatch(state_dict_path):
    handler = PytorchModelHandlerTensor(state_dict_path, _Net, {"hidden": 5})
    with pytest.raises(ModelLoadError, match=r"(?s)does not match _Net.*size mismatch for first\."):
        handler.load_model()


def test_model_params_the_class_does_not_take_are_named(state_dict_path):
    handler = PytorchModelHandlerTensor(state_dict_path, _Net, {"width": 5})
    with pytest.raises(ModelLoadError, match=r"cannot build _Net\(\*\*\{'width': 5\}\)"):
        handler.load_model()


def test_examples_of_the_wrong_width_name_seen_and_expected_shapes(state_dict_path):
    handler = _handler(state_dict_path)
    with pytest.raises(InvalidExampleError, match=r"examples of shape \(3,\).*\(2x3 and 4x8\)"):
        handler.run_inference([torch.zeros(3), torch.zeros(3)], handler.load_model())


def test_ragged_batch_names_the_shapes(state_dict_path):
    handler = _handler(state_dict_path)
    with pytest.raises(InvalidExampleError, match=r"shapes \[\(3,\), \(4,\)\]"):
        handler.run_inference([torch.zeros(4), torch.zeros(3)], handler.load_model())


def test_examples_that_are_not_tensors_are_named(state_dict_path, dataset):
    handler = _handler(state_dict_path)
    x, _ = dataset
    with pytest.raises(InvalidExampleError, match=r"must be torch.Tensor, got \['ndarray'\]"):
        handler.run_inference(list(x[:2]), handler.load_model())


def test_keyed_batch_with_ragged_key_or_missing_key_is_named(tmp_path, two_inputs):
    path = str(tmp_path / "two_inputs.pt")
    torch.save(two_inputs.state_dict(), path)
    handler = PytorchModelHandlerKeyedTensor(path, _TwoInputs)
    model = handler.load_model()
    ragged = [
        {"features": torch.zeros(4), "offset": torch.zeros(1)},
        {"features": torch.zeros(3), "offset": torch.zeros(1)},
    ]
    with pytest.raises(InvalidExampleError, match=r"key 'features'.*shapes \[\(3,\), \(4,\)\]"):
        handler.run_inference(ragged, model)
    missing = [{"features": torch.zeros(4), "offset": torch.zeros(1)}, {"features": torch.zeros(4)}]
    with pytest.raises(InvalidExampleError, match="same keys; of the 2 .* 'offset' is in 1"):
        handler.run_inference(missing, model)
    with pytest.raises(InvalidExampleError, match=r"must be dicts .* got \['Tensor'\]"):
        handler.run_inference([torch.zeros(4)], model)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "no model was given"),
        ({"state_dict_path": "a.pt"}, "state_dict_path 'a.pt' needs model_class"),
        (
            {"state_dict_path": "a.pt", "model_class": _Net, "torch_script_model_path": "b.pt"},
            "both state_dict_path 'a.pt' and torch_script_model_path 'b.pt'",
        ),
        (
            {"model_class": _Net, "torch_script_model_path": "b.pt"},
            "model_class _Net was given with torch_script_model_path",
        ),
        ({"model_class": _Net}, "no model was given"),
    ],
)
@pytest.mark.parametrize(
    "handler_class", [PytorchModelHandlerTensor, PytorchModelHandlerKeyedTensor]
)
def test_construction_errors_say_what_to_give(handler_class, kwargs, message):
    with pytest.raises(ValueError, match=message):
        handler_class(**kwargs)


def test_unknown_handler_keyword_is_a_construction_error(state_dict_path):
    with pytest.raises(TypeError, match="max_batchsize"):
        _handler(state_dict_path, max_batchsize=3)


def test_options_and_sizes_are_reported(monkeypatch, state_dict_path):
    monkeypatch.setenv("LIVEINFERENCE_PYTORCH_TEST", "before")
    env_vars = {"LIVEINFERENCE_PYTORCH_TEST": "after"}
    handler = _handler(
        state_dict_path, min_batch_size=2, max_batch_size=8, model_copies=2, env_vars=env_vars
    )
    assert handler.batch_elements_kwargs() == {"min_batch_size": 2, "max_batch_size": 8}
    assert handler.share_model_across_processes() and handler.model_copies() == 2
    assert handler.get_metrics_namespace() == "BeamML_PyTorch"
    handler.set_environment_vars()
    assert os.environ["LIVEINFERENCE_PYTORCH_TEST"] == "after"
    assert handler.get_num_bytes([torch.zeros(4), torch.zeros(4, dtype=torch.float64)]) == 48
    assert handler.get_num_bytes([torch.zeros(3, 4)[1]]) == 16  # a row view: its own elements
    keyed = PytorchModelHandlerKeyedTensor(state_dict_path, _Net)
    assert keyed.get_num_bytes([{"a": torch.zeros(3), "b": torch.zeros(2, dtype=torch.int8)}]) == 14


def test_public_api_matches_beams():
    beam_pytorch = pytest.importorskip("apache_beam.ml.inference.pytorch_inference")
    for name in (
        "PytorchModelHandlerTensor",
        "PytorchModelHandlerKeyedTensor",
        "default_tensor_inference_fn",
        "default_keyed_tensor_inference_fn",
        "make_tensor_model_fn",
        "make_keyed_tensor_model_fn",
    ):
        ours = inspect.signature(getattr(pytorch, name)).parameters
        theirs = inspect.signature(getattr(beam_pytorch, name)).parameters
        expected = [(p.name, p.kind) for p in theirs.values()]
        if name.startswith("Pytorch"):
            expected = kinds_as_of_2_77(list(theirs.values()))
        assert [(p.name, p.kind) for p in ours.values()] == expected, name
        for parameter in theirs.values():
            if parameter.name != "inference_fn":
                assert ours[parameter.name].default == parameter.default, (name, parameter.name)
