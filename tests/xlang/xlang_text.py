"""Functions the Hugging Face tests allow by module name: a word-level tokenizer with the
vocabulary of `framework_models.write_tiny_text_classifier`, and a logits-to-label step."""

from typing import Any, Dict

import torch

from liveinference import PredictionResult

WORDS = ["good", "bad", "movie", "plot", "great", "awful"]
LENGTH = 8
_IDS = {word: index + 5 for index, word in enumerate(WORDS)}


def token_ids(text: str) -> torch.Tensor:
    """[CLS] words [SEP], padded with [PAD] to LENGTH ids; unknown words are [UNK]."""
    ids = [2, *(_IDS.get(word, 1) for word in text.split()), 3]
    return torch.tensor(ids + [0] * (LENGTH - len(ids)), dtype=torch.long)


def tokenize(text: str) -> Dict[str, torch.Tensor]:
    """The model's keyword inputs: input_ids and attention_mask."""
    ids = token_ids(text)
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def logits_label(result: Any) -> PredictionResult:
    """Replaces a model output (a dict with logits, or the logits) by the best class."""
    logits = result.inference["logits"] if isinstance(result.inference, dict) else result.inference
    return result._replace(inference=int(torch.argmax(logits)))
