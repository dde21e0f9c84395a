"""Every framework handler swaps in a second model dropped into the watched folder mid-stream.

Each test streams numbered examples through RunInference on the local runner in streaming
mode, renames a second model into the watched folder a second in, and checks that the
predictions, in stream order, come from the first model and then from the second (by model_id
and by value: the two models answer 1 and 2 whatever the input), and that every example
comes out once with no dead letters. The models are tiny constant models built here.

Models saved as directories (a TensorFlow SavedModel, Hugging Face save_pretrained) are not
seen by `watch_model_pattern` yet (see DIRECTORIES_NOT_WATCHED); the Hugging Face handlers
are also tested with the directory announced by a ModelMetadata event, which works.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
import time
from typing import Any, Callable, Dict, List, Tuple

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import apache_beam as beam  # noqa: E402
import numpy  # noqa: E402
import pandas  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import xgboost  # noqa: E402
from apache_beam.transforms.periodicsequence import PeriodicImpulse  # noqa: E402

from liveinference import ModelMetadata, RunInference  # noqa: E402
from liveinference.frameworks.huggingface import (  # noqa: E402
    HuggingFaceModelHandlerKeyedTensor,
    HuggingFaceModelHandlerTensor,
    HuggingFacePipelineModelHandler,
)
from liveinference.frameworks.onnx import OnnxModelHandlerNumpy  # noqa: E402
from liveinference.frameworks.pytorch import (  # noqa: E402
    PytorchModelHandlerKeyedTensor,
    PytorchModelHandlerTensor,
)
from liveinference.frameworks.sklearn import (  # noqa: E402
    SklearnModelHandlerNumpy,
    SklearnModelHandlerPandas,
)
from liveinference.frameworks.tensorflow import (  # noqa: E402
    ModelType,
    TFModelHandlerNumpy,
    TFModelHandlerTensor,
)
from liveinference.frameworks.xgboost import (  # noqa: E402
    XGBoostModelHandlerDatatable,
    XGBoostModelHandlerNumpy,
    XGBoostModelHandlerPandas,
    XGBoostModelHandlerSciPy,
)

from refresh_models import write_model  # noqa: E402

RATE = 0.1          # seconds between examples
SECONDS = 3.0       # length of the stream
COUNT = 30          # examples in the stream: SECONDS / RATE
DROP_AFTER = 1.0    # seconds into the stream when the second model lands
ANNOUNCE_AFTER = 0.3  # seconds after it lands that an event names it (event mode)
POLL = 0.2          # RunInference's watch interval
LABELS = (1, 2)     # what the first and the second model answer
COLUMNS = ["a", "b", "c", "d"]

# Watching a folder for model directories (SavedModel, save_pretrained) does not work yet:
# FilePatternSource.poll (refresh/sources.py) lists the pattern with FileSystems.match, which
# returns files only, so a directory renamed into the folder is never offered and the first
# model serves to the end. Strict, so these tests fail once directories are watched.
DIRECTORIES_NOT_WATCHED = pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="watch_model_pattern never offers a directory: FileSystems.match lists files only",
)


@dataclasses.dataclass(frozen=True)
class Case:
    """How one handler is fed and read.

    Attributes:
        handler: Builds the handler serving the first model, from its path.
        example: The i-th example of the stream.
        index: Recovers i from an example.
        label: Which model's answer (1 or 2) an inference is.
    """

    handler: Callable[[str], Any]
    example: Callable[[int], Any]
    index: Callable[[Any], int]
    label: Callable[[Any], int]


@dataclasses.dataclass(frozen=True)
class Models:
    """The first model's path, and a second one (file or directory) to drop in later."""

    first: str
    second: str


def _save_pair(root: Any, name: str, save: Callable[[str, int], None]) -> Models:
    """Saves models answering 1 and 2 as root/v1{name} and root/v2{name}."""
    paths = [str(root / f"v{label}{name}") for label in LABELS]
    for path, label in zip(paths, LABELS):
        save(path, label)
    return Models(*paths)


# ---------------------------------------------------------------- the mid-stream swap


def _drop(source: str, watched: str, staging: str) -> str:
    """Copies `source` to staging, then renames it into `watched`, so it appears complete."""
    name = os.path.basename(source)
    staged = os.path.join(staging, name)
    if os.path.isdir(source):
        shutil.copytree(source, staged)
    else:
        shutil.copyfile(source, staged)
    target = os.path.join(watched, name)
    os.replace(staged, target)
    return target


def _stream(p: Any, start: float, example: Callable[[int], Any]) -> Any:
    return (
        p
        | PeriodicImpulse(start_timestamp=start, stop_timestamp=start + SECONDS, fire_interval=RATE)
        | beam.Map(lambda t: example(round((float(t) - start) / RATE)))
    )


def _run_swap(
    run_pipeline: Any, tmp_path: Any, case: Case, models: Models, pattern: str, events: bool = False
) -> Tuple[List[Any], str]:
    """Runs the stream with `case`'s handler on `models.first`; drops `models.second` mid-run.

    The second model is renamed into a watched folder; RunInference watches `pattern`
    there, or, with `events`, is told of the second model by a ModelMetadata event shortly
    after it landed. Returns the results in stream order and the second model's id.
    """
    watched, staging = tmp_path / "watched", tmp_path / "staging"
    watched.mkdir()
    staging.mkdir()
    second = str(watched / os.path.basename(models.second))
    dropped: List[str] = []

    def build(p: Any) -> Dict[str, Any]:
        start = time.time() + 0.5
        if events:
            announced = (
                p
                | "EventClock" >> PeriodicImpulse(
                    start_timestamp=start + DROP_AFTER + ANNOUNCE_AFTER,
                    stop_timestamp=start + DROP_AFTER + ANNOUNCE_AFTER + 0.1,
                    fire_interval=1,
                )
                | "Announce" >> beam.Map(lambda _: ModelMetadata(second, "v2"))
            )
            refresh: Dict[str, Any] = {"model_metadata_pcoll": announced}
        else:
            refresh = {"watch_model_pattern": str(watched / pattern)}
        timer = threading.Timer(
            start + DROP_AFTER - time.time(),
            lambda: dropped.append(_drop(models.second, str(watched), str(staging))),
        )
        timer.daemon = True
        timer.start()
        rows = _stream(p, start, case.example)
        results, dlq = rows | RunInference(
            case.handler(models.first), interval=POLL, **refresh
        ).with_exception_handling()
        return {
            "results": results, "failed": dlq.failed_inferences, "loads": dlq.failed_model_loads
        }

    out = run_pipeline(build, streaming=True)
    assert dropped == [second], "the second model was not dropped during the run"
    assert out["failed"] == [] and out["loads"] == []
    results = sorted(out["results"], key=lambda r: case.index(r.example))
    assert [case.index(r.example) for r in results] == list(range(COUNT))
    return results, second


def _check_swap(results: List[Any], case: Case, first: str, second: str) -> None:
    """The first model served, then the second, each answering as it should."""
    runs: List[str] = []
    for result in results:
        if not runs or runs[-1] != result.model_id:
            runs.append(result.model_id)
    assert runs == [first, second]
    answers = {first: LABELS[0], second: LABELS[1]}
    wrong = [
        (result.model_id, case.label(result.inference))
        for result in results
        if case.label(result.inference) != answers[result.model_id]
    ]
    assert wrong == []


def _assert_swaps(
    run_pipeline: Any, tmp_path: Any, case: Case, models: Models, pattern: str, events: bool = False
) -> None:
    results, second = _run_swap(run_pipeline, tmp_path, case, models, pattern, events)
    _check_swap(results, case, models.first, second)


# ---------------------------------------------------------------- scikit-learn


def _row(i: int) -> numpy.ndarray:
    return numpy.array([float(i), 0.0, 0.0, 0.0], numpy.float32)


def _first_value(example: Any) -> int:
    return int(round(float(numpy.asarray(example).reshape(-1)[0])))


def _scalar(inference: Any) -> int:
    return int(round(float(numpy.asarray(inference).reshape(-1)[0])))


@pytest.fixture(scope="module")
def sklearn_models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return _save_pair(
        tmp_path_factory.mktemp("sklearn"), ".pkl", lambda path, label: write_model(path, label)
    )


SKLEARN = {
    "numpy": Case(
        lambda path: SklearnModelHandlerNumpy(path, max_batch_size=4), _row, _first_value, _scalar
    ),
    "pandas": Case(
        lambda path: SklearnModelHandlerPandas(path, max_batch_size=4),
        lambda i: pandas.DataFrame([_row(i)], columns=COLUMNS),
        lambda frame: int(frame.iloc[0, 0]),
        _scalar,
    ),
}


@pytest.mark.parametrize("kind", sorted(SKLEARN))
def test_sklearn_handlers_swap_in_a_dropped_pickle(run_pipeline, tmp_path, sklearn_models, kind):
    _assert_swaps(run_pipeline, tmp_path, SKLEARN[kind], sklearn_models, "*.pkl")


# ---------------------------------------------------------------- PyTorch


class ConstantNet(torch.nn.Module):
    """A linear layer whose zero weights make it answer its bias whatever the input."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


def _constant_net(label: int) -> ConstantNet:
    net = ConstantNet()
    with torch.no_grad():
        net.linear.weight.zero_()
        net.linear.bias.fill_(float(label))
    return net.eval()


@pytest.fixture(scope="module")
def torch_models(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Models]:
    root = tmp_path_factory.mktemp("pytorch")
    return {
        "state_dict": _save_pair(
            root, ".pt", lambda path, label: torch.save(_constant_net(label).state_dict(), path)
        ),
        "torch_script": _save_pair(
            root, ".torchscript",
            lambda path, label: torch.jit.save(torch.jit.script(_constant_net(label)), path),
        ),
    }


def _tensor_row(i: int) -> torch.Tensor:
    return torch.tensor([float(i), 0.0, 0.0, 0.0])


TORCH = {
    "state_dict": (
        Case(lambda path: PytorchModelHandlerTensor(path, ConstantNet, max_batch_size=4),
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
        Case(lambda path: PytorchModelHandlerKeyedTensor(path, ConstantNet, max_batch_size=4),
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
    _assert_swaps(run_pipeline, tmp_path, case, torch_models[models], pattern)


# ---------------------------------------------------------------- TensorFlow


def _keras_constant(label: int) -> Any:
    """A Dense layer with zero kernel and bias `label`: answers `label` whatever the input."""
    keras = tf.keras
    return keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(
            1, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(label)
        ),
    ])


def _keras_architecture() -> Any:
    """create_model_fn for the saved weights: the architecture, weights still to load."""
    return _keras_constant(0)


@pytest.fixture(scope="module")
def tf_models(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Models]:
    root = tmp_path_factory.mktemp("tensorflow")
    return {
        "keras": _save_pair(root, ".keras", lambda path, label: _keras_constant(label).save(path)),
        "weights": _save_pair(
            root, ".weights.h5", lambda path, label: _keras_constant(label).save_weights(path)
        ),
        "saved_model": _save_pair(
            root, "_saved_model",
            lambda path, label: _keras_constant(label).export(path, verbose=False),
        ),
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
                path, ModelType.SAVED_WEIGHTS, _keras_architecture, max_batch_size=4
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
    pytest.param("numpy_saved_model_directory", marks=DIRECTORIES_NOT_WATCHED),
])
def test_tensorflow_handlers_swap_in_a_dropped_model(run_pipeline, tmp_path, tf_models, kind):
    case, models, pattern = TF[kind]
    _assert_swaps(run_pipeline, tmp_path, case, tf_models[models], pattern)


# ---------------------------------------------------------------- ONNX


def _save_onnx_constant(path: str, label: int) -> None:
    """An ONNX graph y = x @ 0 + label, for float32 inputs of 4 features."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "constant",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        [
            numpy_helper.from_array(numpy.zeros((4, 1), numpy.float32), "w"),
            numpy_helper.from_array(numpy.array([label], numpy.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save_model(model, path)


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return _save_pair(tmp_path_factory.mktemp("onnx"), ".onnx", _save_onnx_constant)


def test_onnx_handler_swaps_in_a_dropped_model_file(run_pipeline, tmp_path, onnx_models):
    case = Case(
        lambda path: OnnxModelHandlerNumpy(path, max_batch_size=4), _row, _first_value, _scalar
    )
    _assert_swaps(run_pipeline, tmp_path, case, onnx_models, "*.onnx")


# ---------------------------------------------------------------- XGBoost


def _xgboost_constant(label: int, named: bool) -> xgboost.XGBRegressor:
    """A regressor fitted to a constant target: it answers `label` whatever the input."""
    x = numpy.random.default_rng(label).normal(size=(16, 4))
    features = pandas.DataFrame(x, columns=COLUMNS) if named else x
    model = xgboost.XGBRegressor(n_estimators=1, max_depth=1, n_jobs=1, base_score=float(label))
    return model.fit(features, numpy.full(16, float(label)))


@pytest.fixture(scope="module")
def xgboost_models(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Models]:
    root = tmp_path_factory.mktemp("xgboost")
    return {
        "plain": _save_pair(
            root, ".ubj", lambda path, label: _xgboost_constant(label, False).save_model(path)
        ),
        "named": _save_pair(
            root, ".json", lambda path, label: _xgboost_constant(label, True).save_model(path)
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
             lambda i: pandas.DataFrame(_row(i).reshape(1, -1), columns=COLUMNS),
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
    _assert_swaps(run_pipeline, tmp_path, case, xgboost_models[models], pattern)


# ---------------------------------------------------------------- Hugging Face

HF_VOCABULARY = 64
HF_LABELS = {"one": 1, "two": 2}


def _hf_tokenizer() -> Any:
    """A WordPiece tokenizer trained here on a few words: nothing is downloaded."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=HF_VOCABULARY, special_tokens=specials)
    tokenizer.train_from_iterator(["row one", "row two", "the next row"], trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[(token, tokenizer.token_to_id(token)) for token in ("[CLS]", "[SEP]")],
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )


def _save_hf_constant(path: str, label: int, tokenizer: Any) -> None:
    """A tiny BERT classifier whose zero head answers class "one" or "two" (`label`)."""
    config = transformers.BertConfig(
        vocab_size=HF_VOCABULARY, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
        intermediate_size=8, max_position_embeddings=8, num_labels=2,
        id2label={0: "one", 1: "two"}, label2id=HF_LABELS,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([1.0, 0.0] if label == 1 else [0.0, 1.0]))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    """Two save_pretrained directories, model and tokenizer each."""
    tokenizer = _hf_tokenizer()
    return _save_pair(
        tmp_path_factory.mktemp("huggingface"), "",
        lambda path, label: _save_hf_constant(path, label, tokenizer),
    )


def _token_ids(i: int) -> torch.Tensor:
    """[CLS] token-(5 + i) [SEP] [PAD]: the example's number is its second token id."""
    return torch.tensor([2, 5 + i, 3, 0])


def _logits_label(inference: Any) -> int:
    return int(torch.argmax(inference["logits"])) + 1


HF = {
    "tensor": Case(
        lambda path: HuggingFaceModelHandlerTensor(
            path, transformers.AutoModelForSequenceClassification, max_batch_size=4
        ),
        _token_ids,
        lambda ids: int(ids[1]) - 5,
        _logits_label,
    ),
    "keyed_tensor": Case(
        lambda path: HuggingFaceModelHandlerKeyedTensor(
            path, transformers.AutoModelForSequenceClassification, "pt", max_batch_size=4
        ),
        lambda i: {"input_ids": _token_ids(i), "attention_mask": torch.tensor([1, 1, 1, 0])},
        lambda example: int(example["input_ids"][1]) - 5,
        _logits_label,
    ),
    "pipeline": Case(
        lambda path: HuggingFacePipelineModelHandler(
            "text-classification", path, device="CPU", max_batch_size=4
        ),
        lambda i: f"row {i}",
        lambda text: int(text.split()[1]),
        lambda inference: HF_LABELS[inference["label"]],
    ),
}


@pytest.mark.parametrize("kind", sorted(HF))
def test_huggingface_handlers_swap_in_an_announced_model_directory(
    run_pipeline, tmp_path, hf_models, kind
):
    _assert_swaps(run_pipeline, tmp_path, HF[kind], hf_models, "*", events=True)


@DIRECTORIES_NOT_WATCHED
@pytest.mark.parametrize("kind", sorted(HF))
def test_huggingface_handlers_swap_in_a_dropped_model_directory(
    run_pipeline, tmp_path, hf_models, kind
):
    _assert_swaps(run_pipeline, tmp_path, HF[kind], hf_models, "*")
