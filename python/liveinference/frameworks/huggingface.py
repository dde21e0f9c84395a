"""Hugging Face handlers: tensors, dicts of tensors, or pipeline inputs (text, paths) in.

A drop-in for Beam's `ml.inference.huggingface_inference`: the same three handlers,
constructor arguments and `PipelineTask`. Models load from a local directory written by
`save_pretrained` (model and tokenizer). liveinference never downloads: a hub name is
looked up only in the local Hugging Face cache (`local_files_only=True`); to let
transformers fetch it, pass `local_files_only=False` in `load_model_args` or
`load_pipeline_args`.

TensorFlow models (`framework='tf'`, or tf.Tensor examples) need TensorFlow, imported only
then; transformers 5 ships PyTorch models only.

This module is about 600 lines, over the style guide's 400: Beam's API puts three handlers
with their full, documented constructors, their default inference functions and the task
enum in one module, and a framework lives in one module.
"""

from __future__ import annotations

import enum
import logging
import os
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import torch

from liveinference.contract import PredictionResult
from liveinference.errors import InvalidExampleError, ModelLoadError
from liveinference.frameworks.options import HandlerOptions, OptionsHandler
from liveinference.results import to_prediction_results

__all__ = [
    "HuggingFaceModelHandlerKeyedTensor",
    "HuggingFaceModelHandlerTensor",
    "HuggingFacePipelineModelHandler",
    "PipelineTask",
]

_LOG = logging.getLogger(__name__)

_Args = Optional[Dict[str, Any]]
PipelineInferenceFn = Callable[[Sequence[Any], Any, Dict[str, Any]], Iterable[Any]]

_SAVE_HINT = (
    "save the model with model.save_pretrained(directory) and its tokenizer with "
    "tokenizer.save_pretrained(directory), and pass that directory"
)
_TOKENIZER_FILES = frozenset({
    "tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
    "tokenizer.model", "sentencepiece.bpe.model", "preprocessor_config.json",
    "processor_config.json",
})


class PipelineTask(str, enum.Enum):
    """The tasks of Hugging Face pipelines, for `HuggingFacePipelineModelHandler(task=...)`."""

    AudioClassification = "audio-classification"
    AutomaticSpeechRecognition = "automatic-speech-recognition"
    Conversational = "conversational"
    DepthEstimation = "depth-estimation"
    DocumentQuestionAnswering = "document-question-answering"
    FeatureExtraction = "feature-extraction"
    FillMask = "fill-mask"
    ImageClassification = "image-classification"
    ImageSegmentation = "image-segmentation"
    ImageToText = "image-to-text"
    MaskGeneration = "mask-generation"
    NER = "ner"
    ObjectDetection = "object-detection"
    QuestionAnswering = "question-answering"
    SentimentAnalysis = "sentiment-analysis"
    Summarization = "summarization"
    TableQuestionAnswering = "table-question-answering"
    TextClassification = "text-classification"
    TextGeneration = "text-generation"
    Text2TextGeneration = "text2text-generation"
    TextToAudio = "text-to-audio"
    TokenClassification = "token-classification"
    Translation = "translation"
    VideoClassification = "video-classification"
    VisualQuestionAnswering = "visual-question-answering"
    VQA = "vqa"
    ZeroShotAudioClassification = "zero-shot-audio-classification"
    ZeroShotClassification = "zero-shot-classification"
    ZeroShotImageClassification = "zero-shot-image-classification"
    ZeroShotObjectDetection = "zero-shot-object-detection"
    Translation_XX_to_YY = "translation_XX_to_YY"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _check_model_directory(uri: str) -> None:
    """Raises ModelLoadError if the local directory `uri` holds no model (hub names pass)."""
    if not os.path.isdir(uri):
        return
    files = sorted(os.listdir(uri))
    if "config.json" not in files:
        only = " (only a tokenizer)" if _TOKENIZER_FILES & set(files) else ""
        raise ModelLoadError(
            f"directory {uri!r} holds no model{only}: it has {files} but no config.json; "
            f"save the model there with model.save_pretrained({uri!r})"
        )


def _load_failure(uri: str, what: str, error: BaseException, local_only: bool) -> ModelLoadError:
    cause = f"{type(error).__name__}: {_first_line(error)}"
    if os.path.isdir(uri):
        return ModelLoadError(
            f"cannot load {uri!r} {what} ({cause}); check that save_pretrained wrote the "
            "directory for a model of this class"
        )
    refusal = ", and liveinference does not download models" if local_only else ""
    opt_in = ", or pass local_files_only=False to let transformers download it"
    return ModelLoadError(
        f"cannot load {uri!r}: it is not a local directory{refusal} ({cause}); {_SAVE_HINT}"
        + (opt_in if local_only else "")
    )


def _check_device(device: str) -> str:
    if not isinstance(device, str) or device.upper() not in ("CPU", "GPU"):
        raise ValueError(f"device must be 'CPU' or 'GPU', got {device!r}")
    return device.upper()


def _place(model: Any, device: str, uri: str) -> Any:
    """Readies a PyTorch model for inference on `device`; the CPU if no GPU is available."""
    if not isinstance(model, torch.nn.Module):
        return model
    model.requires_grad_(False)
    model.eval()
    if device == "GPU" and torch.cuda.is_available():
        model.to(torch.device("cuda"))
    elif device == "GPU":
        _LOG.warning("model %s asked for device='GPU', but CUDA is not available; using CPU", uri)
    return model


def _model_device(model: Any) -> torch.device:
    first = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
    return torch.device("cpu") if first is None else first.device


def _is_tf(example: Any) -> bool:
    return type(example).__module__.startswith("tensorflow")


def _stack(tensors: Sequence[Any], what: str) -> Any:
    """Stacks torch or tf tensors into one batch; explains why when they cannot be."""
    if all(isinstance(t, torch.Tensor) for t in tensors):
        shapes = sorted({tuple(t.shape) for t in tensors})
        if len(shapes) == 1:
            return torch.stack(list(tensors))
    elif all(_is_tf(t) for t in tensors):
        import tensorflow as tf

        shapes = sorted({tuple(t.shape) for t in tensors})
        if len(shapes) == 1:
            return tf.stack(list(tensors), axis=0)
    else:
        kinds = sorted({type(t).__name__ for t in tensors})
        raise InvalidExampleError(
            f"{what} must be torch.Tensor or tf.Tensor, got {kinds}; convert them first, "
            "e.g. with torch.as_tensor, or tokenize text with return_tensors='pt'"
        )
    raise InvalidExampleError(
        f"{what} must all have one shape to be stacked into a batch; this batch has shapes "
        f"{shapes}; pad them to one length, e.g. tokenizer(..., padding='max_length', "
        "max_length=N)"
    )


def _call_model(call: Callable[[], Any], shapes: Any) -> Any:
    try:
        return call()
    except torch.cuda.OutOfMemoryError:
        raise
    except (RuntimeError, IndexError, ValueError, TypeError) as error:
        raise InvalidExampleError(
            f"the model cannot take examples of shape {shapes}: {_first_line(error)}; check "
            "them against what the model was built for (vocabulary size, sequence length)"
        ) from error


def _infer_tensors(
    batch: Sequence[Any], model: Any, inference_args: Dict[str, Any], model_id: Optional[str]
) -> List[PredictionResult]:
    stacked = _stack(batch, "examples")
    with torch.no_grad():
        if isinstance(stacked, torch.Tensor):
            stacked = stacked.to(_model_device(model))
        outputs = _call_model(lambda: model(stacked, **inference_args), tuple(stacked.shape[1:]))
    return to_prediction_results(batch, outputs, model_id)


def _infer_keyed(
    batch: Sequence[Dict[str, Any]],
    model: Any,
    inference_args: Dict[str, Any],
    model_id: Optional[str],
) -> List[PredictionResult]:
    if not all(isinstance(example, dict) for example in batch):
        kinds = sorted({type(example).__name__ for example in batch})
        raise InvalidExampleError(
            f"examples must be dicts of input name to tensor, got {kinds}; use "
            "HuggingFaceModelHandlerTensor for plain tensors"
        )
    keys = sorted({key for example in batch for key in example})
    partial = [key for key in keys if any(key not in example for example in batch)]
    if partial:
        raise InvalidExampleError(
            f"examples must all have the same keys; keys {partial} are missing from some "
            f"of the {len(batch)} examples of this batch"
        )
    stacked = {
        key: _stack([example[key] for example in batch], f"tensors under {key!r}") for key in keys
    }
    device = _model_device(model)
    with torch.no_grad():
        stacked = {
            key: value.to(device) if isinstance(value, torch.Tensor) else value
            for key, value in stacked.items()
        }
        shapes = {key: tuple(value.shape[1:]) for key, value in stacked.items()}
        outputs = _call_model(lambda: model(**stacked, **inference_args), shapes)
    return to_prediction_results(batch, outputs, model_id)


def _tensor_bytes(tensor: Any) -> int:
    if isinstance(tensor, torch.Tensor):
        return tensor.element_size() * tensor.nelement()
    return sys.getsizeof(tensor)


class _PretrainedHandler(OptionsHandler):
    """What the tensor and keyed-tensor handlers share: loading, device and options."""

    def __init__(
        self,
        model_uri: str,
        model_class: Any,
        device: str,
        inference_fn: Optional[Callable[..., Iterable[PredictionResult]]],
        load_model_args: _Args,
        options: HandlerOptions,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if not model_uri or model_class is None:
            raise ValueError(
                f"{name} needs both model_uri (a directory written by save_pretrained) and "
                f"model_class (e.g. transformers.AutoModel); got model_uri={model_uri!r}, "
                f"model_class={model_class!r}"
            )
        self._model_uri = model_uri
        self._model_class = model_class
        self._device = _check_device(device)
        self._inference_fn = inference_fn
        self._load_model_args = {"local_files_only": True, **(load_model_args or {})}
        self._configure(options)

    def load_model(self) -> Any:
        """Loads `model_class.from_pretrained(model_uri)` for inference on the device.

        Raises:
            ModelLoadError: if `model_uri` is a directory without a model (a tokenizer
                alone, say), or not a local directory and not in the local cache.
        """
        uri = self._model_uri
        _check_model_directory(uri)
        name = getattr(self._model_class, "__name__", repr(self._model_class))
        try:
            model = self._model_class.from_pretrained(uri, **self._load_model_args)
        except Exception as error:
            local_only = bool(self._load_model_args.get("local_files_only"))
            raise _load_failure(uri, f"with {name}.from_pretrained", error, local_only) from error
        return _place(model, self._device, uri)

    def _run(
        self,
        default: Callable[..., List[PredictionResult]],
        batch: Sequence[Any],
        model: Any,
        inference_args: _Args,
    ) -> Iterable[PredictionResult]:
        if self._inference_fn is not None:
            return self._inference_fn(
                batch, model, self._device, inference_args or {}, self._model_uri
            )
        try:
            return default(batch, model, inference_args or {}, self._model_uri)
        except InvalidExampleError as error:
            raise InvalidExampleError(f"model {self._model_uri!r}: {error}") from error

    def update_model_path(self, model_path: Optional[str] = None) -> None:
        """Points the handler at a new model directory; the next `load_model` reads it."""
        self._model_uri = model_path or self._model_uri

    def validate_inference_args(self, inference_args: _Args) -> None:
        """Accepts any `inference_args`: they go to the model's call as keywords."""


class HuggingFaceModelHandlerTensor(_PretrainedHandler):
    """Runs a Hugging Face model on tensors (torch or tf), one tensor per example.

    Args:
        model_uri: A directory written by `save_pretrained` (or a hub name already in
            the local cache).
        model_class: The class to load it with, e.g. `AutoModelForSequenceClassification`.
        device: 'CPU' or 'GPU'; 'GPU' falls back to the CPU, with a warning, without CUDA.
        inference_fn: `fn(batch, model, device, inference_args, model_id)` returning
            PredictionResults; by default the batch is stacked and passed to the model.
        load_model_args: Keyword arguments for `from_pretrained`.
        min_batch_size: The smallest batch `BatchElements` makes.
        max_batch_size: The largest batch `BatchElements` makes.
        max_batch_duration_secs: The longest a batch waits to fill, in streaming.
        large_model: Keep one copy of the model per machine instead of per process.
        model_copies: The number of copies to keep per machine (implies sharing).
        **kwargs: `env_vars`, a dict of environment variables set before loading.

    Raises:
        ValueError: if `model_uri` or `model_class` is missing, or for another device.
        TypeError: for an unknown keyword argument.
    """

    def __init__(
        self,
        model_uri: str,
        model_class: Any,
        device: str = "CPU",
        *,
        inference_fn: Optional[Callable[..., Iterable[PredictionResult]]] = None,
        load_model_args: _Args = None,
        min_batch_size: Optional[int] = None,
        max_batch_size: Optional[int] = None,
        max_batch_duration_secs: Optional[int] = None,
        large_model: bool = False,
        model_copies: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        options = HandlerOptions.of(
            min_batch_size, max_batch_size, max_batch_duration_secs, large_model, model_copies,
            kwargs,
        )
        super().__init__(model_uri, model_class, device, inference_fn, load_model_args, options)

    def run_inference(
        self, batch: Sequence[Any], model: Any, inference_args: _Args = None
    ) -> Iterable[PredictionResult]:
        """Stacks the tensors and calls the model on them; one result per example.

        Raises:
            InvalidExampleError: naming the model, if the examples are not tensors, differ
                in shape, or the model rejects them.
        """
        return self._run(_infer_tensors, batch, model, inference_args)

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        """Returns the summed size of the tensors in bytes."""
        return sum(_tensor_bytes(tensor) for tensor in batch)

    def get_metrics_namespace(self) -> str:
        """Returns Beam's namespace for this handler."""
        return "BeamML_HuggingFaceModelHandler_Tensor"


class HuggingFaceModelHandlerKeyedTensor(_PretrainedHandler):
    """Runs a Hugging Face model on dicts of named tensors, e.g. a tokenizer's output.

    Each key's tensors are stacked across the batch and passed to the model as the
    keyword argument of that name. Takes the arguments of `HuggingFaceModelHandlerTensor`
    and `framework`: 'pt' for PyTorch or 'tf' for TensorFlow tensors.

    Raises:
        ValueError: also for a framework other than 'pt' or 'tf'.
    """

    def __init__(
        self,
        model_uri: str,
        model_class: Any,
        framework: str,
        device: str = "CPU",
        *,
        inference_fn: Optional[Callable[..., Iterable[PredictionResult]]] = None,
        load_model_args: _Args = None,
        min_batch_size: Optional[int] = None,
        max_batch_size: Optional[int] = None,
        max_batch_duration_secs: Optional[int] = None,
        large_model: bool = False,
        model_copies: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        if framework not in ("pt", "tf"):
            raise ValueError(
                f"framework must be 'pt' (PyTorch) or 'tf' (TensorFlow), got {framework!r}"
            )
        options = HandlerOptions.of(
            min_batch_size, max_batch_size, max_batch_duration_secs, large_model, model_copies,
            kwargs,
        )
        super().__init__(model_uri, model_class, device, inference_fn, load_model_args, options)
        self._framework = framework

    def run_inference(
        self, batch: Sequence[Dict[str, Any]], model: Any, inference_args: _Args = None
    ) -> Iterable[PredictionResult]:
        """Stacks each key's tensors and calls the model with them; one result per example.

        Raises:
            InvalidExampleError: naming the model, if an example is not a dict, the
                examples differ in keys or shapes, or the model rejects them.
        """
        return self._run(_infer_keyed, batch, model, inference_args)

    def get_num_bytes(self, batch: Sequence[Dict[str, Any]]) -> int:
        """Returns the summed size of all the examples' tensors in bytes."""
        return sum(_tensor_bytes(tensor) for example in batch for tensor in example.values())

    def get_metrics_namespace(self) -> str:
        """Returns Beam's namespace for this handler."""
        return "BeamML_HuggingFaceModelHandler_KeyedTensor"


def _default_pipeline_inference_fn(
    batch: Sequence[Any], pipeline: Any, inference_args: Dict[str, Any]
) -> Iterable[Any]:
    return pipeline(list(batch), **inference_args)


class HuggingFacePipelineModelHandler(OptionsHandler):
    """Runs a Hugging Face pipeline (task, model and tokenizer) on its inputs, e.g. text.

    Args:
        task: The pipeline task, a string or a `PipelineTask`; may be left out when the
            model's config names it.
        model: A directory written by `save_pretrained` holding the model and its
            tokenizer or processor (or a hub name already in the local cache).
        device: 'CPU' or 'GPU'; None takes the GPU where CUDA is available, else the CPU.
        inference_fn: `fn(batch, pipeline, inference_args)` returning one prediction per
            example; by default the pipeline is called on the batch.
        load_pipeline_args: Keyword arguments for `transformers.pipeline`.
        min_batch_size: The smallest batch `BatchElements` makes.
        max_batch_size: The largest batch `BatchElements` makes.
        max_batch_duration_secs: The longest a batch waits to fill, in streaming.
        large_model: Keep one copy of the model per machine instead of per process.
        model_copies: The number of copies to keep per machine (implies sharing).
        **kwargs: `env_vars`, a dict of environment variables set before loading.

    Raises:
        ValueError: if neither task nor model is given, for a device other than 'CPU' or
            'GPU', or for a device given both here and in `load_pipeline_args`.
        TypeError: for an unknown keyword argument.
    """

    def __init__(
        self,
        task: Union[str, PipelineTask] = "",
        model: str = "",
        *,
        device: Optional[str] = None,
        inference_fn: PipelineInferenceFn = _default_pipeline_inference_fn,
        load_pipeline_args: _Args = None,
        min_batch_size: Optional[int] = None,
        max_batch_size: Optional[int] = None,
        max_batch_duration_secs: Optional[int] = None,
        large_model: bool = False,
        model_copies: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if not task and not model:
            raise ValueError(
                "HuggingFacePipelineModelHandler needs a task or a model (a directory written "
                "by save_pretrained); give model, and task unless the model's config names it"
            )
        self._configure(HandlerOptions.of(
            min_batch_size, max_batch_size, max_batch_duration_secs, large_model, model_copies,
            kwargs,
        ))
        self._task = task.value if isinstance(task, PipelineTask) else task
        self._model = model
        self._inference_fn = inference_fn
        self._load_pipeline_args = {"local_files_only": True, **(load_pipeline_args or {})}
        if device is not None and "device" in self._load_pipeline_args:
            raise ValueError(
                f"device {device!r} is given both as an argument and in load_pipeline_args "
                f"({self._load_pipeline_args['device']!r}); give it once"
            )
        self._device = _check_device(device) if device is not None else None

    def _pipeline_device(self) -> Dict[str, Any]:
        if "device" in self._load_pipeline_args or "device_map" in self._load_pipeline_args:
            return {}
        if self._device != "CPU" and torch.cuda.is_available():
            return {"device": "cuda:0"}
        if self._device == "GPU":
            _LOG.warning(
                "pipeline %s asked for device='GPU', but CUDA is not available; using CPU",
                self._model,
            )
        return {"device": "cpu"}

    def load_model(self) -> Any:
        """Builds the pipeline from the model directory.

        Raises:
            ModelLoadError: if the directory holds no model, or a model without the
                tokenizer or processor its inputs need, or `model` is not a local
                directory and not in the local cache (nothing is downloaded).
        """
        from transformers import pipeline

        model, args = self._model, self._load_pipeline_args
        if model and os.path.isdir(model):
            _check_model_directory(model)
            given = {"tokenizer", "feature_extractor", "image_processor", "processor"} & set(args)
            if not given and not _TOKENIZER_FILES & set(os.listdir(model)):
                raise ModelLoadError(
                    f"directory {model!r} holds a model but no tokenizer or processor, so the "
                    "pipeline could not read its inputs; save one there with "
                    f"tokenizer.save_pretrained({model!r})"
                )
        options: Dict[str, Any] = {
            "task": self._task or None, "model": model or None, **self._pipeline_device(), **args
        }
        try:
            return pipeline(**options)
        except Exception as error:
            if not model:
                raise ModelLoadError(
                    f"no model was given for task {self._task!r}, and its default model is not "
                    f"in the local cache ({_first_line(error)}); {_SAVE_HINT} as model"
                ) from error
            what = f"as a {self._task or 'Hugging Face'} pipeline"
            raise _load_failure(model, what, error, bool(args.get("local_files_only"))) from error

    def run_inference(
        self, batch: Sequence[Any], model: Any, inference_args: _Args = None
    ) -> Iterable[PredictionResult]:
        """Runs the pipeline on the batch; one PredictionResult per example.

        Raises:
            InvalidExampleError: naming the model, if the pipeline rejects the examples.
        """
        try:
            predictions = self._inference_fn(batch, model, inference_args or {})
        except (ValueError, TypeError, KeyError) as error:
            kinds = sorted({type(example).__name__ for example in batch})
            raise InvalidExampleError(
                f"pipeline {self._task or ''} {self._model!r} cannot take examples of types "
                f"{kinds}: {_first_line(error)}"
            ) from error
        return to_prediction_results(batch, predictions, self._model or None)

    def update_model_path(self, model_path: Optional[str] = None) -> None:
        """Points the pipeline at a new model directory for the same task."""
        self._model = model_path or self._model

    def validate_inference_args(self, inference_args: _Args) -> None:
        """Accepts any `inference_args`: they go to the pipeline's call as keywords."""

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        """Returns the summed in-memory size of the examples."""
        return sum(sys.getsizeof(example) for example in batch)

    def get_metrics_namespace(self) -> str:
        """Returns Beam's namespace for this handler."""
        return "BeamML_HuggingFacePipelineModelHandler"
