"""Every framework handler swaps in a second model dropped into the watched folder mid-stream.

Each test streams numbered examples through RunInference on the local runner in streaming
mode, renames a second model into the watched folder once the first served a few
predictions, stops the stream once the second served a few (`swap_stream`: every step waits
on an event, never on the clock), and checks that the predictions, in stream order, come
from the first model and then from the second (by model_id and by value: the two models
answer 1 and 2 whatever the input), and that every example comes out once with no dead
letters. The models are tiny constant models built here.

Models saved as directories (a TensorFlow SavedModel, Hugging Face save_pretrained) are
watched as one version each; the Hugging Face handlers are also tested with the directory
announced by a ModelMetadata event.
"""

from __future__ import annotations

from typing import Any, Dict

# First: it sets Hugging Face offline before transformers is imported.
import framework_models as builders
import numpy
import pandas
import pytest
import scipy.sparse
import tensorflow as tf
import torch
import transformers
import xgboost

from liveinference.frameworks.huggingface import (
    HuggingFaceModelHandlerKeyedTensor,
    HuggingFaceModelHandlerTensor,
    HuggingFacePipelineModelHandler,
)
from liveinference.frameworks.onnx import OnnxModelHandlerNumpy
from liveinference.frameworks.pytorch import (
    PytorchModelHandlerKeyedTensor,
    PytorchModelHandlerTensor,
)
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy, SklearnModelHandlerPandas
from liveinference.frameworks.tensorflow import (
    ModelType,
    TFModelHandlerNumpy,
    TFModelHandlerTensor,
)
from liveinference.frameworks.xgboost import (
    XGBoostModelHandlerDatatable,
    XGBoostModelHandlerNumpy,
    XGBoostModelHandlerPandas,
    XGBoostModelHandlerSciPy,
)

from refresh_models import write_model
from swap_stream import Case, Models, assert_swaps, save_pair


# ---------------------------------------------------------------- scikit-learn


def _row(i: int) -> numpy.ndarray:
    return numpy.array([float(i), 0.0, 0.0, 0.0], numpy.float32)


def _first_value(example: Any) -> int:
    return int(round(float(numpy.asarray(example).reshape(-1)[0])))


def _scalar(inference: Any) -> int:
    return int(round(float(numpy.asarray(inference).reshape(-1)[0])))


@pytest.fixture(scope="module")
def sklearn_models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return save_pair(
        tmp_path_factory.mktemp("sklearn"), ".pkl", lambda path, label: write_model(path, label)
    )


SKLEARN = {
    "numpy": Case(
        lambda path: SklearnModelHandlerNumpy(path, max_batch_size=4), _row, _first_value, _scalar
    ),
    "pandas": Case(
        lambda path: SklearnModelHandlerPandas(path, max_batch_size=4),
        lambda i: pandas.DataFrame([_row(i)], columns=builders.COLUMNS),
        lambda frame: int(frame.iloc[0, 0]),
        _scalar,
    ),
}


@pytest.mark.parametrize("kind", sorted(SKLEARN))
def test_sklearn_handlers_swap_in_a_dropped_pickle(run_pipeline, tmp_path, sklearn_models, kind):
    assert_swaps(run_pipeline, tmp_path, SKLEARN[kind], sklearn_models, "*.pkl")


# ---------------------------------------------------------------- PyTorch


@pytest.fixture(scope="module")
def torch_models(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Models]:
    root = tmp_path_factory.mktemp("pytorch")
    return {
        "state_dict": save_pair(root, ".pt", builders.save_torch_state_dict),
        "torch_script": save_pair(root, ".torchscript", builders.save_torch_script),
    }


def _tensor_row(i: int) -> torch.Tensor:
    return torch.tensor([float(i), 0.0, 0.0, 0.0])


TORCH = {
    "state_dict": (
        Case(lambda path: PytorchModelHandlerTensor(path, builders.ConstantNet, max_batch_size=4),
             _tensor_row, _first_value, _scalar),
        "state_dict",
        "*.pt",
    ),
    "torch_script": (
        Case(lambda path: PytorchModelHandlerTensor(torch_script_model_path=path, max_batch_size=4),
             _tensor_row, _first_value, _scalar),
        "torch_script",
        "*.torchscript",
    ),
    "keyed_state_dict": (
        Case(lambda path: PytorchModelHandlerKeyedTensor(
                 path, builders.ConstantNet, max_batch_size=4
             ),
             lambda i: {"features": _tensor_row(i)},
             lambda example: _first_value(example["features"]),
             _scalar),
        "state_dict",
        "*.pt",
    ),
}


@pytest.mark.parametrize("kind", sorted(TORCH))
def test_pytorch_handlers_swap_in_a_dropped_model_file(run_pipeline, tmp_path, torch_models, kind):
    case, models, pattern = TORCH[kind]
    assert_swaps(run_pipeline, tmp_path, case, torch_models[models], pattern)


# ---------------------------------------------------------------- TensorFlow


@pytest.fixture(scope="module")
def tf_models(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Models]:
    root = tmp_path_factory.mktemp("tensorflow")
    return {
        "keras": save_pair(root, ".keras", builders.save_keras),
        "weights": save_pair(root, ".weights.h5", builders.save_keras_weights),
        "saved_model": save_pair(root, "_saved_model", builders.save_saved_model),
    }


TF = {
    "numpy_keras": (
        Case(lambda path: TFModelHandlerNumpy(path, max_batch_size=4), _row, _first_value, _scalar),
        "keras",
        "*.keras",
    ),
    "tensor_saved_weights": (
        Case(
            lambda path: TFModelHandlerTensor(
                path, ModelType.SAVED_WEIGHTS, builders.keras_constant, max_batch_size=4
            ),
            lambda i: tf.constant(_row(i)),
            _first_value,
            _scalar,
        ),
        "weights",
        "*.weights.h5",
    ),
    "numpy_saved_model_directory": (
        Case(lambda path: TFModelHandlerNumpy(path, max_batch_size=4), _row, _first_value, _scalar),
        "saved_model",
        "*",
    ),
}


@pytest.mark.parametrize("kind", [
    "numpy_keras",
    "tensor_saved_weights",
    "numpy_saved_model_directory",
])
def test_tensorflow_handlers_swap_in_a_dropped_model(run_pipeline, tmp_path, tf_models, kind):
    case, models, pattern = TF[kind]
    assert_swaps(run_pipeline, tmp_path, case, tf_models[models], pattern)


# ---------------------------------------------------------------- ONNX


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return save_pair(tmp_path_factory.mktemp("onnx"), ".onnx", builders.save_onnx)


def test_onnx_handler_swaps_in_a_dropped_model_file(run_pipeline, tmp_path, onnx_models):
    case = Case(
        lambda path: OnnxModelHandlerNumpy(path, max_batch_size=4), _row, _first_value, _scalar
    )
    assert_swaps(run_pipeline, tmp_path, case, onnx_models, "*.onnx")


# ---------------------------------------------------------------- XGBoost


@pytest.fixture(scope="module")
def xgboost_models(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Models]:
    root = tmp_path_factory.mktemp("xgboost")
    return {
        "plain": save_pair(root, ".ubj", builders.save_xgboost),
        "named": save_pair(
            root, ".json", lambda path, label: builders.save_xgboost(path, label, named=True)
        ),
    }


def _datatable_row(i: int) -> Any:
    import datatable

    return datatable.Frame(_row(i).reshape(1, -1))


XGBOOST = {
    "numpy": (
        Case(lambda path: XGBoostModelHandlerNumpy(xgboost.XGBRegressor, path, max_batch_size=4),
             lambda i: _row(i).reshape(1, -1), _first_value, _scalar),
        "plain",
        "*.ubj",
    ),
    "pandas": (
        Case(lambda path: XGBoostModelHandlerPandas(xgboost.XGBRegressor, path, max_batch_size=4),
             lambda i: pandas.DataFrame(_row(i).reshape(1, -1), columns=builders.COLUMNS),
             lambda frame: int(frame.iloc[0, 0]),
             _scalar),
        "named",
        "*.json",
    ),
    "scipy": (
        Case(lambda path: XGBoostModelHandlerSciPy(xgboost.Booster, path, max_batch_size=4),
             lambda i: scipy.sparse.csr_matrix(_row(i).reshape(1, -1)),
             lambda matrix: _first_value(matrix.toarray()),
             _scalar),
        "plain",
        "*.ubj",
    ),
    "datatable": (
        Case(lambda path: XGBoostModelHandlerDatatable(xgboost.Booster, path, max_batch_size=4),
             _datatable_row,
             lambda frame: int(frame[0, 0]),
             _scalar),
        "plain",
        "*.ubj",
    ),
}


@pytest.mark.parametrize("kind", sorted(XGBOOST))
def test_xgboost_handlers_swap_in_a_dropped_state_file(
    run_pipeline, tmp_path, xgboost_models, kind
):
    if kind == "datatable":
        pytest.importorskip(
            "datatable", reason="the datatable package does not import here (no wheel for it)"
        )
    case, models, pattern = XGBOOST[kind]
    assert_swaps(run_pipeline, tmp_path, case, xgboost_models[models], pattern)


# ---------------------------------------------------------------- Hugging Face

@pytest.fixture(scope="module")
def hf_models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    """Two save_pretrained directories, model and tokenizer each."""
    tokenizer = builders.hf_tokenizer()
    return save_pair(
        tmp_path_factory.mktemp("huggingface"), "",
        lambda path, label: builders.save_hf(path, label, tokenizer),
    )


def _token_ids(i: int) -> torch.Tensor:
    """[CLS] two tokens [SEP]: the tokens' ids, less 5, are the example's number's two
    base-50 digits (ids stay inside the 64-word vocabulary)."""
    return torch.tensor([2, 5 + i // 50, 5 + i % 50, 3])


def _token_index(ids: Any) -> int:
    return (int(ids[1]) - 5) * 50 + int(ids[2]) - 5


def _logits_label(inference: Any) -> int:
    return int(torch.argmax(inference["logits"])) + 1


HF = {
    "tensor": Case(
        lambda path: HuggingFaceModelHandlerTensor(
            path, transformers.AutoModelForSequenceClassification, max_batch_size=4
        ),
        _token_ids,
        _token_index,
        _logits_label,
    ),
    "keyed_tensor": Case(
        lambda path: HuggingFaceModelHandlerKeyedTensor(
            path, transformers.AutoModelForSequenceClassification, "pt", max_batch_size=4
        ),
        lambda i: {"input_ids": _token_ids(i), "attention_mask": torch.tensor([1, 1, 1, 1])},
        lambda example: _token_index(example["input_ids"]),
        _logits_label,
    ),
    "pipeline": Case(
        lambda path: HuggingFacePipelineModelHandler(
            "text-classification", path, device="CPU", max_batch_size=4
        ),
        lambda i: f"row {i}",
        lambda text: int(text.split()[1]),
        lambda inference: builders.HF_LABELS[inference["label"]],
    ),
}


@pytest.mark.parametrize("kind", sorted(HF))
def test_huggingface_handlers_swap_in_an_announced_model_directory(
    run_pipeline, tmp_path, hf_models, kind
):
    assert_swaps(run_pipeline, tmp_path, HF[kind], hf_models, "*", events=True)


@pytest.mark.parametrize("kind", sorted(HF))
def test_huggingface_handlers_swap_in_a_dropped_model_directory(
    run_pipeline, tmp_path, hf_models, kind
):
    assert_swaps(run_pipeline, tmp_path, HF[kind], hf_models, "*")
