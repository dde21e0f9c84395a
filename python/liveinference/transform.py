"""The RunInference PTransform and the DoFn that runs a model on each batch."""

from __future__ import annotations

import time
import uuid
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils import multi_process_shared, shared

from liveinference.contract import ModelHandler, PredictionResult
from liveinference.deadletter import (
    ExceptionTypes,
    FailureRecord,
    FailureThreshold,
    RunInferenceDLQ,
    isolate_failures,
)
from liveinference.metrics import InferenceMetrics
from liveinference.processing import ApplyFns
from liveinference.serving import ModelSlot, Serving
from liveinference.timeouts import call_with_timeout

__all__ = ["RunInference"]

_FAILED = "failed"
_CRASHED = "crashed"
_REFRESH_KWARGS = frozenset({"interval", "stop_timestamp"})

# One registry per worker process: every step and thread with the same model tag gets the
# same ModelSlot, so a model is loaded once per process however many steps serve it.
_SLOTS = shared.Shared()


def _stamped(results: List[Any], model_id: Optional[str]) -> List[Any]:
    """Names `model_id` on PredictionResults whose handler left model_id unset."""
    if model_id is None or not results:
        return results
    first = results[0]
    if isinstance(first, PredictionResult) and first.model_id is None:
        return [result._replace(model_id=model_id) for result in results]
    return results


class _InferenceDoFn(beam.DoFn):
    """Runs the serving model on each batch; with a `catch`, isolates and dead-letters."""

    def __init__(
        self,
        handler: ModelHandler,
        namespace: str,
        model_tag: str,
        catch: Optional[ExceptionTypes],
        timeout: Optional[float],
    ) -> None:
        self._handler = handler
        self._namespace = namespace
        self._model_tag = model_tag
        self._catch = catch
        self._timeout = timeout
        self._slot: Optional[ModelSlot] = None
        self._metrics: Optional[InferenceMetrics] = None

    def _load_model(self) -> Any:
        handler = self._handler
        if not handler.share_model_across_processes():
            return handler.load_model()
        return multi_process_shared.MultiProcessShared(
            handler.load_model, tag=f"{self._model_tag}-model", always_proxy=True
        ).acquire()

    def _make_slot(self) -> ModelSlot:
        return ModelSlot(self._handler, self._load_model)

    def setup(self) -> None:
        if not self._handler.override_metrics(self._namespace):
            self._metrics = InferenceMetrics(self._namespace)
        self._slot = _SLOTS.acquire(self._make_slot, tag=self._model_tag)
        if self._catch is None:
            self._slot.serving(self._timeout)

    def _run(self, serving: Serving, batch: Sequence[Any], inference_args: Any) -> List[Any]:
        def call() -> List[Any]:
            return list(serving.handler.run_inference(batch, serving.model, inference_args))

        results = call_with_timeout(call, self._timeout, f"inference on {len(batch)} examples")
        return _stamped(results, serving.model_id)

    def _catches(self, error: BaseException) -> bool:
        return self._catch is not None and isinstance(error, self._catch)

    def process(
        self, batch: Sequence[Any], inference_args: Optional[Dict[str, Any]] = None
    ) -> Iterator[Any]:
        slot = self._slot
        assert slot is not None, "setup() has not run"
        try:
            serving = slot.serving(self._timeout)
        except Exception as error:
            if not self._catches(error):
                raise
            if self._metrics:
                self._metrics.failed_batches.inc()
            for element in batch:
                yield TaggedOutput(_FAILED, FailureRecord.of(element, "load_model", error))
            return
        metrics = self._metrics
        if metrics:
            for report in slot.take_reports():
                metrics.record_load(report.latency_ms, report.byte_size)
        started = time.perf_counter_ns()
        failures: List[Tuple[Any, BaseException]] = []
        try:
            results = self._run(serving, batch, inference_args)
        except Exception as error:
            if metrics:
                metrics.failed_batches.inc()
            if not self._catches(error):
                error.add_note(
                    f"raised by RunInference on a batch of {len(batch)} examples "
                    f"(model {serving.model_id or type(serving.handler).__name__})"
                )
                raise
            if isinstance(error, TimeoutError):
                results, failures = [], [(element, error) for element in batch]
            else:
                results, failures = isolate_failures(
                    lambda part: self._run(serving, part, inference_args),
                    batch,
                    error,
                    self._catch,  # type: ignore[arg-type]
                )
        if metrics:
            metrics.record_batch(
                len(results),
                serving.handler.get_num_bytes(batch),
                (time.perf_counter_ns() - started) // 1000,
            )
        yield from results
        for element, error in failures:
            yield TaggedOutput(
                _FAILED, FailureRecord.of(element, "inference", error, serving.model_id)
            )


def _crash_records(crash: Tuple[Any, Tuple[Any, str, Any]]) -> Iterator[FailureRecord]:
    """Turns a batch whose worker subprocess died into one record per element."""
    batch, (error_type, error_repr, _traceback) = crash
    message = (
        f"the inference subprocess died on this element's batch ({error_repr}); its "
        f"{len(batch)} elements are dead-lettered together"
    )
    for element in batch:
        yield FailureRecord(
            element, "inference", f"{error_type.__module__}.{error_type.__qualname__}", message
        )


class RunInference(beam.PTransform):
    """Runs a model on every element of a PCollection; a drop-in for Beam's RunInference.

    Elements are preprocessed by the handler's functions, batched with `BatchElements`
    (unless the handler skips batching), run through the model loaded once per worker
    process, and postprocessed. The output is one prediction per input element, usually a
    `PredictionResult(example, inference, model_id)`.

    Args:
        model_handler: The handler that loads and runs the model.
        inference_args: Extra keyword arguments for the framework's predict call.
        metrics_namespace: The namespace of the reported metrics; defaults to the
            handler's.
        model_metadata_pcoll: A PCollection of `ModelMetadata` naming models to serve.
        watch_model_pattern: A file pattern to watch for new models.
        model_identifier: A tag shared by RunInference steps that serve the same model,
            so that a worker process loads it once for all of them.
        **kwargs: `interval` and `stop_timestamp` for `watch_model_pattern`.

    Raises:
        TypeError: if `model_handler` is not a handler or an unknown keyword is given.
        ValueError: if the handler refuses `inference_args`.
        NotImplementedError: for model refresh, which this version does not do yet.
    """

    def __init__(
        self,
        model_handler: ModelHandler,
        inference_args: Optional[Dict[str, Any]] = None,
        metrics_namespace: Optional[str] = None,
        *,
        model_metadata_pcoll: Optional[beam.PCollection] = None,
        watch_model_pattern: Optional[str] = None,
        model_identifier: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if not all(hasattr(model_handler, name) for name in ("load_model", "run_inference")):
            raise TypeError(
                f"RunInference needs a ModelHandler, got {type(model_handler).__name__}; "
                "subclass liveinference.ModelHandler or use a framework handler"
            )
        unknown = sorted(set(kwargs) - _REFRESH_KWARGS)
        if unknown:
            raise TypeError(
                f"RunInference got unknown keyword arguments {unknown}; "
                f"it accepts {sorted(_REFRESH_KWARGS)} besides its named parameters"
            )
        if model_metadata_pcoll is not None or watch_model_pattern is not None:
            raise NotImplementedError(
                "model refresh (model_metadata_pcoll, watch_model_pattern) is not in this "
                "version of liveinference yet"
            )
        model_handler.validate_inference_args(inference_args)
        self._model_handler = model_handler
        self._inference_args = inference_args
        self._metrics_namespace = metrics_namespace
        self._model_tag = model_identifier or uuid.uuid4().hex
        self._catch: Optional[ExceptionTypes] = None
        self._use_subprocess = False
        self._threshold = 1.0
        self._timeout: Optional[float] = None

    @classmethod
    def from_callable(cls, model_handler_provider: Any, **kwargs: Any) -> "RunInference":
        """Builds RunInference from a callable returning a handler, called with `kwargs`."""
        return cls(model_handler_provider(**kwargs))

    def annotations(self) -> Dict[str, Any]:
        """Names the handler in the pipeline graph."""
        handler_type = type(self._model_handler)
        return {
            "model_handler": str(self._model_handler),
            "model_handler_type": f"{handler_type.__module__}.{handler_type.__qualname__}",
            **super().annotations(),
        }

    def with_exception_handling(
        self,
        *,
        exc_class: ExceptionTypes = Exception,
        use_subprocess: bool = False,
        threshold: float = 1,
        timeout: Optional[float] = None,
    ) -> "RunInference":
        """Sends failing elements to dead-letter outputs instead of failing the pipeline.

        The transform then returns `(results, RunInferenceDLQ(failed_inferences,
        failed_preprocessing, failed_postprocessing))`, each holding `FailureRecord`s. A
        batch that fails is split until the failing elements stand alone, so good rows of
        the batch are still predicted.

        Args:
            exc_class: The exception class, or tuple of classes, that dead-letter.
            use_subprocess: Run inference in a subprocess, so that a crash of the process
                (a segfault in a native library) dead-letters its batch instead of killing
                the worker.
            threshold: The largest share of elements that may be dead-lettered (per
                window) before the pipeline fails; 1 never fails.
            timeout: Seconds a model load or one batch's inference may take; a batch over
                the limit is dead-lettered with a TimeoutError.

        Returns:
            This transform.

        Raises:
            ValueError: if `threshold` is outside [0, 1] or `timeout` is not positive.
        """
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
        self._catch = exc_class
        self._use_subprocess = use_subprocess
        self._threshold = threshold
        self._timeout = timeout
        return self

    def expand(self, pcoll: beam.PCollection) -> Any:
        handler = self._model_handler
        inputs = pcoll
        pcoll, failed_preprocessing = self._apply_fns(
            pcoll, list(handler.get_preprocess_fns()), "preprocess"
        )
        if not handler.should_skip_batching():
            pcoll = pcoll | "BatchElements" >> beam.BatchElements(
                **handler.batch_elements_kwargs()
            )
        results, failed_inferences = self._infer(pcoll)
        results, failed_postprocessing = self._apply_fns(
            results, list(handler.get_postprocess_fns()), "postprocess"
        )
        if self._catch is None:
            return results
        if self._threshold < 1:
            dead_letters = [failed_inferences, *failed_preprocessing, *failed_postprocessing]
            _ = (
                dead_letters
                | "AllDeadLetters" >> beam.Flatten()
                | "FailureThreshold" >> FailureThreshold(inputs, self._threshold)
            )
        return results, RunInferenceDLQ(
            failed_inferences, failed_preprocessing, failed_postprocessing
        )

    def _apply_fns(
        self, pcoll: beam.PCollection, fns: List[Any], stage: str
    ) -> Tuple[beam.PCollection, List[beam.PCollection]]:
        if not fns:
            return pcoll, []
        return pcoll | stage.capitalize() >> ApplyFns(fns, stage, self._catch)

    def _infer(self, batches: beam.PCollection) -> Tuple[beam.PCollection, Any]:
        handler = self._model_handler
        namespace = self._metrics_namespace or handler.get_metrics_namespace()
        dofn = _InferenceDoFn(handler, namespace, self._model_tag, self._catch, self._timeout)
        pardo = beam.ParDo(dofn, self._inference_args).with_resource_hints(
            **handler.get_resource_hints()
        )
        if self._catch is None:
            return batches | "RunInference" >> pardo, None
        if not self._use_subprocess:
            outputs = batches | "RunInference" >> pardo.with_outputs(_FAILED, main="main")
            return outputs.main, outputs[_FAILED]
        outputs = batches | "RunInference" >> pardo.with_exception_handling(
            main_tag="main", dead_letter_tag=_CRASHED, exc_class=self._catch, use_subprocess=True
        )
        crashed = outputs[_CRASHED] | "CrashRecords" >> beam.FlatMap(_crash_records)
        failed = (outputs[_FAILED], crashed) | "FailedInferences" >> beam.Flatten()
        return outputs.main, failed
