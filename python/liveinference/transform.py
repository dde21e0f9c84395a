"""The RunInference PTransform: its arguments and builder methods, and how it wires its steps.

The steps live elsewhere: processing.py (pre/postprocessing), batching.py, inference_step.py
(the inference ParDo and its outputs), event_time.py, batched/ (on_batches), rollout/.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import apache_beam as beam

from liveinference.batched.dofn import PostprocessFn
from liveinference.batched.transform import OnBatches
from liveinference.batching import HandlerBatching
from liveinference.contract import ModelHandler
from liveinference.deadletter import ExceptionTypes, FailureThreshold, RunInferenceDLQ
from liveinference.dofn import InferenceDoFn
from liveinference.event_time import (EventTimeInferenceDoFn, RouteByEventTime, by_event_time,
                                      routed_batching)
from liveinference.inference_step import infer_step
from liveinference.processing import ApplyFns
from liveinference.refresh.config import RefreshConfig
from liveinference.refresh.pipeline_run import run_id_of
from liveinference.refresh.validate import ModelValidation
from liveinference.rollout.config import RolloutConfig
from liveinference.rollout.policy import RolloutGates
from liveinference.run_channels import with_run_channels
from liveinference.settings import (check_handler_and_keywords, check_model_manager_arguments,
                                    checked_number)
from liveinference.sharing import SlotAccess

__all__ = ["RunInference"]

_REFRESH_KWARGS = frozenset({"interval", "stop_timestamp", "refresh_channel"})


class RunInference(beam.PTransform):
    """Runs a model on every element of a PCollection; a drop-in for Beam's RunInference.

    Elements are preprocessed by the handler's functions, batched with `BatchElements`
    (unless the handler skips batching), run through the model loaded once per worker
    process, and postprocessed. The output is one prediction per input element, usually a
    `PredictionResult(example, inference, model_id)`.

    New model versions are loaded off the inference path and swapped in between batches:
    by every worker polling `watch_model_pattern`, or from the `ModelMetadata` events of
    an unbounded `model_metadata_pcoll`. A version that fails to load or validate never
    serves; the last good model keeps serving and the failure is reported.

    A bounded `model_metadata_pcoll` in a batch pipeline (a backfill) works by event time, as
    Beam's side inputs do: each element is served by the version whose timestamp is the
    latest at or before the element's (the handler's own model before the first), so a
    re-run reproduces which model made which prediction. A version that fails to load is
    reported and its elements are served by the latest good version before it.

    Args:
        model_handler: The handler that loads and runs the model.
        inference_args: Extra keyword arguments for the framework's predict call.
        metrics_namespace: The namespace of the reported metrics; defaults to the
            handler's.
        model_metadata_pcoll: A PCollection of `ModelMetadata` (or, for per-key models, of
            lists of `KeyModelPathMapping`) naming the model to serve from then on.
        watch_model_pattern: A file pattern every worker polls for new model files; the
            newest complete file serves.
        model_identifier: A tag shared by RunInference steps that serve the same model,
            so that a worker process loads it once for all of them.
        use_model_manager: Beam 2.77's switch to its GPU ModelManager; only False is
            accepted (see Raises).
        model_manager_args: The ModelManager's arguments; only None is accepted.
        monitoring_transform: A PTransform applied to a copy of the predictions as
            inference made them (before the handler's postprocessing functions).
        **kwargs: `interval` (seconds between polls; 10 for a pattern, 1 for events),
            `stop_timestamp` (Unix time to stop polling) and `refresh_channel` (a folder
            on any Beam filesystem every worker can read and write, e.g. "gs://b/events",
            under which each pipeline run relays its events; defaults to the pipeline's
            `--temp_location`, else to this user's private local directory, which suits
            runners whose workers share this machine).

    Raises:
        TypeError: if `model_handler` is not a handler, an unknown keyword is given, or a
            number is not a number.
        ValueError: if the handler refuses `inference_args`, `interval` is not a finite
            positive number of seconds, `use_model_manager` or `model_manager_args` is set,
            or (when the pipeline is built) a bounded `model_metadata_pcoll` of a batch
            pipeline comes with `watch_model_pattern`, or the event channel is local while
            the runner's workers run on other machines.
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
        use_model_manager: bool = False,
        model_manager_args: Optional[Dict[str, Any]] = None,
        monitoring_transform: Optional[beam.PTransform] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        check_model_manager_arguments(use_model_manager, model_manager_args)
        check_handler_and_keywords(model_handler, kwargs, _REFRESH_KWARGS)
        model_handler.validate_inference_args(inference_args)
        self._model_handler = model_handler
        self._inference_args = inference_args
        self._metrics_namespace = metrics_namespace
        self._model_tag = model_identifier or uuid.uuid4().hex
        self._model_metadata_pcoll = model_metadata_pcoll
        self._event_time = False  # decided when the step expands, see expand()
        self._monitoring_transform = monitoring_transform
        self._refresh = RefreshConfig.from_arguments(
            watch_model_pattern, model_metadata_pcoll is not None, kwargs
        )
        channel_root = kwargs.get("refresh_channel")
        self._channel_root = None if channel_root is None else os.fspath(channel_root)
        self._catch: Optional[ExceptionTypes] = None
        self._use_subprocess = False
        self._threshold = 1.0
        self._timeout: Optional[float] = None
        self._on_batches: Optional[OnBatches] = None
        self._rollout_control: Optional[beam.PCollection] = None
        self._rollout_labels: Optional[beam.PTransform] = None

    @classmethod
    def from_callable(cls, model_handler_provider: Any, **kwargs: Any) -> "RunInference":
        """Builds RunInference from a callable returning a handler, called with `kwargs`."""
        return cls(model_handler_provider(**kwargs))

    def annotations(self) -> Dict[str, Any]:
        """Names the handler, the model tag and any monitoring transform in the graph."""
        handler_type = type(self._model_handler)
        monitoring = self._monitoring_transform
        return {
            "model_handler": str(self._model_handler),
            "model_handler_type": f"{handler_type.__module__}.{handler_type.__qualname__}",
            "model_identifier": self._model_tag,
            **({} if monitoring is None else {"monitoring_transform": str(monitoring)}),
            **super().annotations(),
        }

    def with_monitoring_transform(self, monitoring_transform: beam.PTransform) -> "RunInference":
        """Applies `monitoring_transform` to a copy of the predictions, as Beam 2.77 does.

        It receives the PCollection of predictions as inference made them, before the
        handler's postprocessing functions; what it returns is not used.

        Args:
            monitoring_transform: A PTransform taking a PCollection of predictions.

        Returns:
            This transform.
        """
        self._monitoring_transform = monitoring_transform
        return self

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
        failed_preprocessing, failed_postprocessing, failed_model_loads))`, each holding
        `FailureRecord`s. A batch that fails is split until the failing elements stand
        alone, so good rows of the batch are still predicted. Each record is also Beam's
        `(input, (exception class, repr, traceback lines))` pair, so Beam code reads it
        unchanged; a failed inference's input is the one-element batch `[element]`.

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
            TypeError: if `threshold` or `timeout` is not a number.
            ValueError: if `threshold` is not a finite number in [0, 1] or `timeout` not
                a finite positive number of seconds.
        """
        threshold = checked_number("threshold", threshold, unit="", at_most=1, zero_allowed=True)
        if timeout is not None:
            timeout = checked_number("timeout", timeout)
        self._catch = exc_class
        self._use_subprocess = use_subprocess
        self._threshold = threshold
        self._timeout = timeout
        self._refresh = dataclasses.replace(self._refresh, load_timeout=timeout)
        return self

    def on_batches(
        self,
        *,
        feature_columns: Optional[Sequence[str]] = None,
        postprocess_fn: Optional[PostprocessFn] = None,
    ) -> "RunInference":
        """Scores elements that are whole batches: one framework call and one output per element.

        Each element is a NumPy 2-D array (rows x features), a pandas DataFrame, or a pyarrow
        RecordBatch or Table (as `ReadFromParquetBatched` yields). Its output is the same
        kind (a RecordBatch for a NumPy array) with the input columns plus `inference` and
        `model_id` columns, ready for `WriteToParquetBatched`. A batch never mixes models.
        With `with_exception_handling`, a failing row is dead-lettered as a `BatchRow`
        (its position and values) and the batch's other rows go on; an element with no
        rows, or none that made it, yields no output batch.

        Args:
            feature_columns: The columns the model takes, in order; None for all.
            postprocess_fn: `fn(rows, inferences, model_id)` returning the output batch
                instead: the kept rows (the input's kind), one inference per row, and the
                model that made them.

        Returns:
            This transform.

        Raises:
            TypeError: if the handler cannot score batches (it says why), or has
                per-example pre- or postprocessing functions.
        """
        self._on_batches = OnBatches.check(self._model_handler, feature_columns, postprocess_fn)
        return self

    def with_rollout(
        self,
        canary_share: float = 0.1,
        *,
        shadow: bool = False,
        seed: int = 0,
        gates: Optional[RolloutGates] = None,
        decide_every: Optional[int] = None,
        control: Optional[beam.PCollection] = None,
        labels: Optional[beam.PTransform] = None,
    ) -> "RunInference":
        """Rolls each new model version out gradually, judged by gates, instead of at once.

        A new version that loaded and passed validation first serves `canary_share` of the
        elements (a seeded stable hash of the element, or of the key of a `(key, value)`
        element, so keys are sticky) while the stable model serves the rest; or, with
        `shadow`, predicts a copy of that share while the stable model serves everything.
        Predictions are `StablePrediction`, `CanaryPrediction` (PredictionResults whose
        `role` says so; see `liveinference.rollout.roles`). Each worker judges the new
        version by `gates` on what it saw: it is promoted (serves every element), or
        rolled back: it stops serving, a record at stage "rollout" naming the failed gates
        and the numbers goes to failed_model_loads, and its file is not loaded again
        until it changes.

        With `shadow`, the output gains one PCollection, last: `ShadowPair(shadow,
        stable)` of each copied element (`results, shadow` without exception handling,
        `results, dlq, shadow` with it).

        Args:
            canary_share: The share of elements the new version serves (or shadows), in
                (0, 1].
            shadow: Shadow the new version instead of letting it serve.
            seed: Changes which elements fall in the share.
            gates: When to promote or roll back; defaults to `RolloutGates()`.
            decide_every: One decision for all workers: a Beam combine sums every
                worker's statistics, decides after every `decide_every` batches' and
                publishes the decision on the run's channel (see
                `liveinference.rollout.consensus`); unset, each worker decides alone.
            control: Commands by hand, a PCollection of `RolloutControl(action,
                model_id)`: promote now, roll back (the candidate, or the promoted model
                to the one before it), pin, unpin (see `liveinference.rollout.control`).
            labels: `JoinLabels(labels, element_id, window_seconds)`: the predictions'
                labels, whose counts feed the shared decision's `max_accuracy_drop` gate
                (see `liveinference.rollout.labels`); needs `decide_every`.

        Returns:
            This transform.

        Raises:
            ValueError: if the step has no source of new versions, the share is out of
                range, or labels and the accuracy gate do not come together.
        """
        if not self._refresh.watch_pattern and self._model_metadata_pcoll is None:
            raise ValueError(
                "with_rollout needs new model versions to roll out: give RunInference "
                "watch_model_pattern= or model_metadata_pcoll="
            )
        rollout = RolloutConfig(canary_share, shadow, seed, gates or RolloutGates(),
                                decide_every, control is not None, labels is not None)
        self._rollout_control, self._rollout_labels = control, labels
        self._refresh = dataclasses.replace(self._refresh, rollout=rollout)
        return self

    def with_model_validation(
        self,
        *,
        canary_examples: Sequence[Any] = (),
        check: Optional[Callable[[list, Any], Any]] = None,
    ) -> "RunInference":
        """Makes each new model version pass checks before it may serve.

        Args:
            canary_examples: Examples the candidate must predict without raising.
            check: `check(canary_predictions, model)`; returning False or raising rejects.

        Returns:
            This transform.

        Raises:
            ValueError: if neither canary examples nor a check is given.
        """
        if not canary_examples and check is None:
            raise ValueError("with_model_validation needs canary_examples, a check, or both")
        validation = ModelValidation(tuple(canary_examples), check)
        self._refresh = dataclasses.replace(self._refresh, validation=validation)
        return self

    def expand(self, pcoll: beam.PCollection) -> Any:
        handler = self._model_handler
        inputs = pcoll
        refresh = self._refresh
        self._event_time = by_event_time(self._model_metadata_pcoll, refresh, pcoll.pipeline)
        live_versions = None if self._event_time else self._model_metadata_pcoll
        refresh = with_run_channels(pcoll.pipeline, refresh, self._channel_root, self._model_tag,
                                    live_versions, self._rollout_control)
        # One slot per model and run: a new run never picks up an old run's model.
        slot_tag = f"{self._model_tag}-{run_id_of(pcoll.pipeline)}"
        if self._on_batches is not None:
            return pcoll | "RunInferenceOnBatches" >> self._batches_step(slot_tag, refresh)
        slots = SlotAccess(handler, slot_tag)
        pcoll, failed_preprocessing = self._apply_fns(
            pcoll, list(handler.get_preprocess_fns()), "preprocess", slots
        )
        batching = handler.batch_elements_kwargs()
        versions = self._model_metadata_pcoll if self._event_time else None
        if versions is not None:
            pcoll = pcoll | "RouteByEventTime" >> RouteByEventTime(versions)
            batching = routed_batching(batching)
        if not handler.should_skip_batching():
            pcoll = pcoll | "BatchElements" >> HandlerBatching(**batching)
        results, failed_inferences, failed_model_loads, shadow = self._infer(
            pcoll, slot_tag, refresh
        )
        if self._monitoring_transform is not None:
            _ = results | "MonitoringOutlet" >> self._monitoring_transform
        results, failed_postprocessing = self._apply_fns(
            results, list(handler.get_postprocess_fns()), "postprocess", slots
        )
        if self._catch is None:
            return results if shadow is None else (results, shadow)
        if self._threshold < 1:
            dead_letters = [failed_inferences, *failed_preprocessing, *failed_postprocessing]
            _ = (
                dead_letters
                | "AllDeadLetters" >> beam.Flatten()
                | "FailureThreshold" >> FailureThreshold(inputs, self._threshold)
            )
        dlq = RunInferenceDLQ(
            failed_inferences, failed_preprocessing, failed_postprocessing, failed_model_loads
        )
        return (results, dlq) if shadow is None else (results, dlq, shadow)

    def _batches_step(self, slot_tag: str, refresh: RefreshConfig) -> beam.PTransform:
        assert self._on_batches is not None
        if self._use_subprocess or self._threshold < 1:
            raise ValueError(
                "on_batches() does not run inference in a subprocess nor check a failure "
                "threshold yet; drop use_subprocess and threshold from with_exception_handling"
            )
        namespace = self._metrics_namespace or self._model_handler.get_metrics_namespace()
        return self._on_batches.transform(
            namespace, slot_tag, refresh, self._inference_args, self._catch, self._timeout
        )

    def _apply_fns(
        self, pcoll: beam.PCollection, fns: List[Any], stage: str, slots: SlotAccess
    ) -> Tuple[beam.PCollection, List[beam.PCollection]]:
        if not fns:
            return pcoll, []
        return pcoll | stage.capitalize() >> ApplyFns(fns, stage, self._catch, slots)

    def _infer(
        self, batches: beam.PCollection, slot_tag: str, refresh: RefreshConfig
    ) -> Tuple[beam.PCollection, Any, Any, Any]:
        handler = self._model_handler
        namespace = self._metrics_namespace or handler.get_metrics_namespace()
        kind = EventTimeInferenceDoFn if self._event_time else InferenceDoFn
        dofn = kind(handler, namespace, slot_tag, self._catch, self._timeout, refresh)
        return infer_step(batches, dofn, handler, refresh, self._inference_args, self._catch,
                          self._use_subprocess, self._rollout_labels)
