"""Constant models of every framework, so a prediction names the model that made it.

Each `save_*(path, label)` writes a tiny model that answers `label` (1 or 2) whatever the
input: zero weights and a bias of `label`, or a regressor fitted to a constant target. The
Hugging Face models answer class "one" or "two". Nothing is downloaded.
"""

from __future__ import annotations

import os
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy  # noqa: E402
import pandas  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import xgboost  # noqa: E402

COLUMNS = ["a", "b", "c", "d"]
HF_VOCABULARY = 64
HF_LABELS = {"one": 1, "two": 2}


class ConstantNet(torch.nn.Module):
    """A linear layer; with zero weights it answers its bias whatever the input."""

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


def save_torch_state_dict(path: str, label: int) -> None:
    torch.save(_constant_net(label).state_dict(), path)


def save_torch_script(path: str, label: int) -> None:
    torch.jit.save(torch.jit.script(_constant_net(label)), path)


def keras_constant(label: int = 0) -> Any:
    """A Dense layer with zero kernel and bias `label`; with no label, create_model_fn."""
    keras = tf.keras
    return keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(
            1, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(label)
        ),
    ])


def save_keras(path: str, label: int) -> None:
    keras_constant(label).save(path)


def save_keras_weights(path: str, label: int) -> None:
    keras_constant(label).save_weights(path)


def save_saved_model(path: str, label: int) -> None:
    keras_constant(label).export(path, verbose=False)


def save_onnx(path: str, label: int) -> None:
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


def save_xgboost(path: str, label: int, named: bool = False) -> None:
    """A regressor fitted to a constant target; `named` fits it on columns COLUMNS."""
    x = numpy.random.default_rng(label).normal(size=(16, 4))
    features = pandas.DataFrame(x, columns=COLUMNS) if named else x
    model = xgboost.XGBRegressor(n_estimators=1, max_depth=1, n_jobs=1, base_score=float(label))
    model.fit(features, numpy.full(16, float(label))).save_model(path)


def hf_tokenizer() -> Any:
    """A WordPiece tokenizer trained here on a few words."""
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


def save_hf(path: str, label: int, tokenizer: Any) -> None:
    """A tiny BERT classifier whose zero head answers "one" or "two", with its tokenizer."""
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
