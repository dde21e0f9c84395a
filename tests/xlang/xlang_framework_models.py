"""Small models the cross-language tests train and save, one per framework."""

from pathlib import Path
from typing import Any

import numpy


def _labels(x: numpy.ndarray, flip: bool = False) -> numpy.ndarray:
    labels = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    return 1 - labels if flip else labels


def write_onnx_classifier(path: Path, x: numpy.ndarray, flip: bool = False) -> Any:
    """Trains a LogisticRegression and writes it as ONNX taking float64 rows; returns it."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(x, _labels(x, flip))
    onnx_model = to_onnx(model, x[:1].astype(numpy.float64), options={"zipmap": False})
    path.write_bytes(onnx_model.SerializeToString())
    return model


def write_xgboost_classifier(path: Path, x: numpy.ndarray) -> Any:
    """Trains a small XGBClassifier (on named columns) and saves it as JSON; returns it."""
    import pandas
    import xgboost

    model = xgboost.XGBClassifier(n_estimators=4, max_depth=2)
    model.fit(pandas.DataFrame(x, columns=["f0", "f1", "f2", "f3"]), _labels(x))
    model.save_model(path)
    return model


def write_tiny_text_classifier(directory: Path) -> None:
    """A one-layer BERT text classifier and its word-level tokenizer, saved locally."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    words = ["good", "bad", "movie", "plot", "great", "awful"]
    vocab = directory / "vocab.txt"
    directory.mkdir()
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words) + 5, hidden_size=8, num_hidden_layers=1,
                        num_attention_heads=1, intermediate_size=8, num_labels=2,
                        max_position_embeddings=16)
    BertForSequenceClassification(config).eval().save_pretrained(directory)
    BertTokenizer(str(vocab)).save_pretrained(directory)
