"""The DoFn that runs the serving model on each batch, isolates failures and reports metrics.

Every prediction and every dead letter it emits names the model that served its batch
(`ServingModel.stamp` and `ServingModel.id_for`); a dead letter of a model that failed to
load names that model.

Every input ends up in the output or in a dead-letter output: when a handler returns fewer
predictions than examples, the examples left without one are dead-lettered (stage
"inference", a PredictionCountError) with exception handling on; without it they are
dropped as in Beam, with a warning once per step, as are surplus predictions.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import GlobalWindows

from liveinference.contract import ModelHandler
from liveinference.deadletter import ExceptionTypes, FailureRecord, isolate_failures
from liveinference.errors import PredictionCountError
from liveinference.metrics import InferenceMetrics
from liveinference.refresh.config import RefreshConfig
from liveinference.refresh.refresher import start_refresher
from liveinference.refresh.slot import LoadReport, ModelSlot, ServingModel
from liveinference.rollout.consensus import SHADOW_TAG, STATS_TAG
from liveinference.rollout.roles import STABLE
from liveinference.rollout.serving import serve_rollout
from liveinference.rollout.state import RolloutState
from liveinference.sharing import ModelCopies, SlotAccess
from liveinference.timeouts import call_with_timeout

__all__ = [
    "FAILED",
    "FAILED_MODEL_LOADS",
    "ROLLOUT_STATS",
    "SHADOW",
    "InferenceDoFn",
    "crash_model_id",
]

FAILED = "failed"
FAILED_MODEL_LOADS = "failed_model_loads"
SHADOW = SHADOW_TAG
ROLLOUT_STATS = STATS_TAG

_LOG = logging.getLogger(__name__)


def crash_model_id(handler: ModelHandler, refresh: RefreshConfig) -> str:
    """Returns the model_id for the dead letters of a batch whose inference subprocess died.

    The process that sees the crash never held the model. Without refresh the model was
    the handler's own; with refresh a newer version may have been serving, so the id says
    it is unknown and names the model the step was configured with.
    """
    configured = handler.get_model_id()
    if not refresh.enabled:
        return configured
    return (
        f"unknown (the inference subprocess died; it serves refreshed versions, "
        f"starting from {configured})"
    )


class InferenceDoFn(beam.DoFn):
    """Runs the serving model on each batch.

    The model is read from the process's ModelSlot once per batch, so a swap never splits
    a batch. With a `catch`, failing elements are isolated and dead-lettered, and models
    the refresher rejected are emitted on the FAILED_MODEL_LOADS output.

    Args:
        handler: The handler of the first model.
        namespace: The metrics namespace.
        model_tag: The key under which worker threads and steps share one slot.
        catch: The exception types that dead-letter; None lets failures fail the bundle.
        timeout: Seconds a load or one batch's inference may take, if limited.
        refresh: How new model versions reach this step.
    """

    def __init__(
        self,
        handler: ModelHandler,
        namespace: str,
        model_tag: str,
        catch: Optional[ExceptionTypes],
        timeout: Optional[float],
        refresh: RefreshConfig,
    ) -> None:
        self._handler = handler
        self._namespace = namespace
        self._model_tag = model_tag
        self._catch = catch
        self._timeout = timeout
        self._refresh = refresh
        self._slot: Optional[ModelSlot] = None
        self._metrics: Dict[str, InferenceMetrics] = {}
        self._report_metrics = True
        self._warned_counts: Set[bool] = set()

    def setup(self) -> None:
        self._report_metrics = not self._handler.override_metrics(self._namespace)
        self._metrics = {}
        self._slot = SlotAccess(self._handler, self._model_tag).acquire()
        self._slot.attach()
        rollout = self._refresh.rollout
        if rollout is not None:
            self._slot.enable_rollout(lambda: RolloutState(rollout))
        if self._refresh.enabled:
            start_refresher(self._refresh, self._slot, self._handler)
        if self._catch is None:
            self._slot.wait_for_model(self._timeout)

    def teardown(self) -> None:
        if self._slot is not None:
            self._slot.detach()
        self._slot = None

    def _serving_model(self, slot: ModelSlot) -> ServingModel:
        """Returns the model for the batch being processed: the slot's serving model."""
        return slot.current() or slot.wait_for_model(self._timeout)

    def _metrics_for(self, model_name: str) -> Optional[InferenceMetrics]:
        if not self._report_metrics:
            return None
        metrics = self._metrics.get(model_name)
        if metrics is None:
            metrics = self._metrics[model_name] = InferenceMetrics(self._namespace, model_name)
        return metrics

    def _run(
        self,
        serving: ServingModel,
        batch: Sequence[Any],
        inference_args: Any,
        unmatched: List[Tuple[Any, BaseException]],
    ) -> List[Any]:
        """Runs the batch; adds the examples the handler left without a prediction, as dead
        letters, to `unmatched`."""
        handler, model = serving.handler, serving.model
        if isinstance(model, ModelCopies):
            model = model.pick()

        def call() -> List[Any]:
            return list(handler.run_inference(batch, model, inference_args))

        results = call_with_timeout(call, self._timeout, f"inference on {len(batch)} examples")
        if len(results) != len(batch):
            unmatched.extend(self._unmatched(serving, batch, len(results)))
        return serving.stamp(results)

    def _unmatched(
        self, serving: ServingModel, batch: Sequence[Any], count: int
    ) -> List[Tuple[Any, BaseException]]:
        """Pairs as Beam does (in order, as far as both go): returns the examples past the
        last prediction with their error if they are dead-lettered; else warns, once per
        step and direction."""
        counts = (
            f"the inference function of model {serving.model_id!r} returned {count} "
            f"predictions for {len(batch)} examples"
        )
        fewer = count < len(batch)
        if fewer and self._catch is not None:
            error = PredictionCountError(
                f"{counts}; this example came after the last prediction; make the inference "
                "function return one prediction per example, in order"
            )
            return [(element, error) for element in batch[count:]]
        if fewer not in self._warned_counts:
            self._warned_counts.add(fewer)
            _LOG.warning(
                "%s; %s, as Beam does (logged once per step; with_exception_handling() "
                "dead-letters examples left without a prediction)",
                counts,
                "the examples past the last prediction are dropped"
                if fewer
                else "every result the handler returned is emitted",
            )
        return []

    def _catches(self, error: BaseException) -> bool:
        return self._catch is not None and isinstance(error, self._catch)

    def _recover(
        self,
        error: Exception,
        metrics: Optional[InferenceMetrics],
        run: Callable[[Sequence[Any]], List[Any]],
        batch: Sequence[Any],
        what: str,
    ) -> Tuple[List[Any], List[Tuple[Any, BaseException]]]:
        """Handles a batch whose inference raised `error`, for the per-row and batched paths.

        Counts the failed batch; with the error caught, finds the elements that fail on
        their own by splitting the batch (`isolate_failures`). A timeout
        (`timeouts.call_with_timeout`) is marked as a failure of the whole batch, so every
        element of the batch fails with it, unsplit.

        Args:
            error: What running the whole batch raised.
            metrics: The serving model's metrics, if reported.
            run: Runs part of the batch; returns one result per element, in order.
            batch: The elements of the batch.
            what: Names the batch and its model in the note added to an uncaught error.

        Returns:
            The results of the good elements in order, and (element, error) of the bad.

        Raises:
            Exception: `error`, with a note naming `what`, unless exception handling
                catches it.
        """
        if metrics:
            metrics.failed_batches.inc()
        if not self._catches(error):
            error.add_note(f"raised by RunInference on {what}")
            raise error
        return isolate_failures(run, batch, error, self._catch)  # type: ignore[arg-type]

    def _slot_events(self) -> Iterator[FailureRecord]:
        """Reports queued loads as metrics; yields rejected models for the dead letters."""
        assert self._slot is not None, "setup() has not run"
        for event in self._slot.take_events():
            if isinstance(event, LoadReport):
                metrics = self._metrics_for(event.model_name)
                if metrics:
                    metrics.record_load(event.latency_ms, event.byte_size)
                continue
            base = self._metrics_for("")
            if base:
                base.failed_model_loads.inc()
            if self._catch is not None:
                yield event

    def process(
        self, batch: Sequence[Any], inference_args: Optional[Dict[str, Any]] = None
    ) -> Iterator[Any]:
        slot = self._slot
        assert slot is not None, "setup() has not run"
        try:
            serving = self._serving_model(slot)
        except Exception as error:
            if not self._catches(error):
                raise
            base = self._metrics_for("")
            if base:
                base.failed_batches.inc()
            model_id = slot.first_model_id
            for element in batch:
                yield TaggedOutput(
                    FAILED, FailureRecord.of(element, "load_model", error, model_id, batched=True)
                )
            return
        for record in self._slot_events():
            yield TaggedOutput(FAILED_MODEL_LOADS, record)
        rollout = slot.rollout
        candidate = rollout.candidate() if rollout is not None else None
        shadow: List[Any] = []
        if candidate is None:
            results, failures = self._serve(serving, batch, inference_args)
            dead = [(element, error, serving.id_for(element)) for element, error in failures]
        else:
            outcome = serve_rollout(
                lambda model, part: self._serve(model, part, inference_args),
                serving,
                candidate,
                batch,
                rollout,
                rollout.router,
            )
            results, dead, shadow = outcome.results, outcome.failures, outcome.shadow
            self._count_roles(outcome.stats, serving, candidate)
            if rollout.config.decides_together:
                for stats in outcome.stats:
                    role, role_stats = stats
                    item = (role, role_stats, rollout.staged_at())
                    yield TaggedOutput(ROLLOUT_STATS, (candidate.model_id, item))
            else:
                rollout.judge(slot)
        yield from results
        for element, failure, model_id in dead:
            yield TaggedOutput(
                FAILED, FailureRecord.of(element, "inference", failure, model_id, batched=True)
            )
        for pair in shadow:
            yield TaggedOutput(SHADOW, pair)

    def _count_roles(self, stats: Any, stable: ServingModel, candidate: ServingModel) -> None:
        """Counts a rollout batch's predictions per role, and per version and role."""
        for role, role_stats in stats:
            model = stable if role == STABLE else candidate
            for name in {"", model.model_name}:
                metrics = self._metrics_for(name)
                if metrics and role_stats.predictions:
                    metrics.record_role(role, role_stats.predictions)

    def _serve(
        self, serving: ServingModel, batch: Sequence[Any], inference_args: Any
    ) -> Tuple[List[Any], List[Tuple[Any, BaseException]]]:
        """Runs `serving` on the batch, isolating failing elements if exceptions are caught;
        returns the stamped results and the (element, error) of the failed elements."""
        metrics = self._metrics_for(serving.model_name)
        started = time.perf_counter_ns()
        failures: List[Tuple[Any, BaseException]] = []
        unmatched: List[Tuple[Any, BaseException]] = []
        try:
            results = self._run(serving, batch, inference_args, unmatched)
        except Exception as error:
            results, failures = self._recover(
                error,
                metrics,
                lambda part: self._run(serving, part, inference_args, unmatched),
                batch,
                f"a batch of {len(batch)} examples (model {serving.model_id})",
            )
        if metrics:
            metrics.record_batch(
                len(results),
                serving.handler.get_num_bytes(batch),
                (time.perf_counter_ns() - started) // 1000,
            )
        return results, [*failures, *unmatched]

    def finish_bundle(self) -> Optional[List[Any]]:
        # A list or None, never a generator: Beam's subprocess wrapper refuses generators.
        records = [
            TaggedOutput(FAILED_MODEL_LOADS, GlobalWindows.windowed_value(record))
            for record in self._slot_events()
        ]
        return records or None
