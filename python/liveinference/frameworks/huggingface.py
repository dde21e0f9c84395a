"""Hugging Face handlers: tensors, dicts of tensors, or pipeline inputs (text, paths) in.

A drop-in for Beam's `ml.inference.huggingface_inference`: the same three handlers,
constructor arguments and `PipelineTask`. Models load from a local directory written by
`save_pretrained` (model and tokenizer). liveinference never downloads: a hub name is
looked up only in the local Hugging Face cache (`local_files_only=True`); to let
transformers fetch it, pass `local_files_only=False` in `load_model_args` or
`load_pipeline_args`.

TensorFlow models (`framework='tf'`, or tf.Tensor examples) need TensorFlow, imported only
then; transformers 5 ships PyTorch models only.

This module holds how to load and call Hugging Face models and pipelines; stacking, device
placement and everything else a handler does come from `base.FrameworkHandler` and
`batches`.
"""

from __future__ import annotations

import enum
import logging
import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import torch

from liveinference.contract import PredictionResult
from liveinference.errors import InvalidExampleError, ModelLoadError
from liveinference.frameworks.base import FrameworkHandler, HandlerArgumentError
from liveinference.frameworks.batches import call_model, check_device, device_of, first_line, place
from liveinference.frameworks.batches import stack, stack_by_key, to_device, to_prediction_results

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
    cause = f"{type(error).__name__}: {first_line(error)}"
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


_PAD_HINT = "pad them to one length, e.g. tokenizer(..., padding='max_length', max_length=N)"


def _run_model(
    keyed: bool, batch: Sequence[Any], model: Any, inference_args: Dict[str, Any]
) -> List[PredictionResult]:
    """Stacks the batch (per key when `keyed`), moves it to the model and calls the model."""
    stacked = (stack_by_key if keyed else stack)(batch, "tensors", hint=_PAD_HINT)
    with torch.no_grad():
        outputs = call_model(
            (lambda inputs: model(**inputs, **inference_args)) if keyed
            else (lambda inputs: model(inputs, **inference_args)),
            to_device(stacked, device_of(model, torch.device("cpu"))),
            (RuntimeError, IndexError, ValueError, TypeError),
            "check them against what the model was built for (vocabulary size, sequence length)",
        )
    return to_prediction_results(batch, outputs)


class _PretrainedHandler(FrameworkHandler):
    """How the tensor and keyed-tensor handlers load a model and call `inference_fn`."""

    returns_results = True
    _keyed: bool

    def _accept(self, arguments: Dict[str, Any]) -> str:
        model_uri, model_class = arguments["model_uri"], arguments["model_class"]
        if not model_uri or model_class is None:
            raise HandlerArgumentError(
                f"{type(self).__name__} needs both model_uri (a directory written by "
                "save_pretrained) and model_class (e.g. transformers.AutoModel); got "
                f"model_uri={model_uri!r}, model_class={model_class!r}"
            )
        if arguments.get("framework", "pt") not in ("pt", "tf"):
            raise ValueError(
                "framework must be 'pt' (PyTorch) or 'tf' (TensorFlow), got "
                f"{arguments['framework']!r}"
            )
        self._model_class = model_class
        self._device = check_device(arguments["device"])
        self._load_model_args = {"local_files_only": True, **(arguments["load_model_args"] or {})}
        return model_uri

    def _load(self, path: str) -> Any:
        _check_model_directory(path)
        name = getattr(self._model_class, "__name__", repr(self._model_class))
        try:
            model = self._model_class.from_pretrained(path, **self._load_model_args)
        except Exception as error:
            local_only = bool(self._load_model_args.get("local_files_only"))
            raise _load_failure(path, f"with {name}.from_pretrained", error, local_only) from error
        return place(model, self._device, path)

    def _infer(self, batch: Sequence[Any], model: Any, inference_args: Dict[str, Any]) -> Any:
        if self._inference_fn is None:
            return _run_model(self._keyed, batch, model, inference_args)
        return self._inference_fn(batch, model, self._device, inference_args, None)


class HuggingFaceModelHandlerTensor(_PretrainedHandler):
    """Runs a Hugging Face model on tensors (torch or tf), one tensor per example.

    Args:
        model_uri: A directory written by `save_pretrained` (or a hub name already in
            the local cache).
        model_class: The class to load it with, e.g. `AutoModelForSequenceClassification`.
        device: 'CPU' or 'GPU'; 'GPU' falls back to the CPU, with a warning, without CUDA;
            any other value means the CPU, with a warning, as in Beam.
        inference_fn: `fn(batch, model, device, inference_args, model_id)` returning
            PredictionResults; by default the batch is stacked and passed to the model. The
            handler passes model_id=None: RunInference names the model on each result.
        load_model_args: Keyword arguments for `from_pretrained`.
        min_batch_size, max_batch_size, max_batch_duration_secs, max_batch_weight,
            element_size_fn, batch_length_fn, batch_bucket_boundaries, large_model,
            model_copies, **kwargs: Batching (Beam 2.77's arguments, on any Beam),
            sharing and `env_vars`, as every framework handler takes them (see
            `base.HandlerOptions`).

    Raises:
        HandlerArgumentError: (a ValueError and, as in Beam, a RuntimeError) if
            `model_uri` or `model_class` is missing.
        ValueError: for a framework other than 'pt' or 'tf'.
        TypeError: for an unknown keyword argument.
    """

    metrics_namespace = "BeamML_HuggingFaceModelHandler_Tensor"
    _keyed = False

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
        max_batch_weight: Optional[int] = None,
        element_size_fn: Optional[Callable[[Any], int]] = None,
        batch_length_fn: Optional[Callable[[Any], int]] = None,
        batch_bucket_boundaries: Optional[List[int]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(locals())


class HuggingFaceModelHandlerKeyedTensor(_PretrainedHandler):
    """Runs a Hugging Face model on dicts of named tensors, e.g. a tokenizer's output.

    Each key's tensors are stacked across the batch and passed to the model as the
    keyword argument of that name. Takes the arguments of `HuggingFaceModelHandlerTensor`
    and `framework`: 'pt' for PyTorch or 'tf' for TensorFlow tensors.

    Raises:
        ValueError: also for a framework other than 'pt' or 'tf'.
    """

    metrics_namespace = "BeamML_HuggingFaceModelHandler_KeyedTensor"
    _keyed = True

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
        max_batch_weight: Optional[int] = None,
        element_size_fn: Optional[Callable[[Any], int]] = None,
        batch_length_fn: Optional[Callable[[Any], int]] = None,
        batch_bucket_boundaries: Optional[List[int]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(locals())


def _default_pipeline_inference_fn(
    batch: Sequence[Any], pipeline: Any, inference_args: Dict[str, Any]
) -> Iterable[Any]:
    return pipeline(list(batch), **inference_args)


class HuggingFacePipelineModelHandler(FrameworkHandler):
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
        min_batch_size, max_batch_size, max_batch_duration_secs, max_batch_weight,
            element_size_fn, batch_length_fn, batch_bucket_boundaries, large_model,
            model_copies, **kwargs: Batching (Beam 2.77's arguments, on any Beam),
            sharing and `env_vars`, as every framework handler takes them (see
            `base.HandlerOptions`).

    Raises:
        ValueError: if neither task nor model is given, for a device other than 'CPU' or
            'GPU', or for a device given both here and in `load_pipeline_args`.
        TypeError: for an unknown keyword argument.
    """

    metrics_namespace = "BeamML_HuggingFacePipelineModelHandler"

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
        max_batch_weight: Optional[int] = None,
        element_size_fn: Optional[Callable[[Any], int]] = None,
        batch_length_fn: Optional[Callable[[Any], int]] = None,
        batch_bucket_boundaries: Optional[List[int]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(locals())

    def _accept(self, arguments: Dict[str, Any]) -> str:
        task, model, device = arguments["task"], arguments["model"], arguments["device"]
        if not task and not model:
            raise ValueError(
                "HuggingFacePipelineModelHandler needs a task or a model (a directory written "
                "by save_pretrained); give model, and task unless the model's config names it"
            )
        self._task = task.value if isinstance(task, PipelineTask) else task
        self._load_pipeline_args = {
            "local_files_only": True, **(arguments["load_pipeline_args"] or {})
        }
        if device is not None and "device" in self._load_pipeline_args:
            raise ValueError(
                f"device {device!r} is given both as an argument and in load_pipeline_args "
                f"({self._load_pipeline_args['device']!r}); give it once"
            )
        self._device = check_device(device, strict=True) if device is not None else None
        return model

    def _pipeline_device(self, model: str) -> Dict[str, Any]:
        if "device" in self._load_pipeline_args or "device_map" in self._load_pipeline_args:
            return {}
        if self._device != "CPU" and torch.cuda.is_available():
            return {"device": "cuda:0"}
        if self._device == "GPU":
            _LOG.warning(
                "pipeline %s asked for device='GPU', but CUDA is not available; using CPU",
                model,
            )
        return {"device": "cpu"}

    def _load(self, path: str) -> Any:
        from transformers import pipeline

        args = self._load_pipeline_args
        if path and os.path.isdir(path):
            _check_model_directory(path)
            given = {"tokenizer", "feature_extractor", "image_processor", "processor"} & set(args)
            if not given and not _TOKENIZER_FILES & set(os.listdir(path)):
                raise ModelLoadError(
                    f"directory {path!r} holds a model but no tokenizer or processor, so the "
                    "pipeline could not read its inputs; save one there with "
                    f"tokenizer.save_pretrained({path!r})"
                )
        options: Dict[str, Any] = {
            "task": self._task or None, "model": path or None, **self._pipeline_device(path),
            **args,
        }
        try:
            return pipeline(**options)
        except Exception as error:
            if not path:
                raise ModelLoadError(
                    f"no model was given for task {self._task!r}, and its default model is not "
                    f"in the local cache ({first_line(error)}); {_SAVE_HINT} as model"
                ) from error
            what = f"as a {self._task or 'Hugging Face'} pipeline"
            raise _load_failure(path, what, error, bool(args.get("local_files_only"))) from error

    def _infer(self, batch: Sequence[Any], model: Any, inference_args: Dict[str, Any]) -> Any:
        try:
            return self._inference_fn(batch, model, inference_args)
        except (ValueError, TypeError, KeyError) as error:
            kinds = sorted({type(example).__name__ for example in batch})
            raise InvalidExampleError(
                f"the {self._task or ''} pipeline cannot take examples of types {kinds}: "
                f"{first_line(error)}"
            ) from error
