"""The DoFn that runs the serving model on each batch, isolates failures and reports metrics.

Every prediction and every dead letter it emits names the model that served its batch
(`ServingModel.stamp` and `ServingModel.id_for`); a dead letter of a model that failed to
load names that model.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils import multi_process_shared, shared

from liveinference.contract import ModelHandler
from liveinference.deadletter import ExceptionTypes, FailureRecord, isolate_failures
from liveinference.metrics import InferenceMetrics
from liveinference.refresh.config import RefreshConfig
from liveinference.refresh.refresher import start_refresher
from liveinference.refresh.slot import LoadReport, ModelSlot, ServingModel
from liveinference.timeouts import call_with_timeout

__all__ = ["FAILED", "FAILED_MODEL_LOADS", "InferenceDoFn", "ModelCopies"]

FAILED = "failed"
FAILED_MODEL_LOADS = "failed_model_loads"

# One registry per worker process: every step and thread with the same model tag gets the
# same ModelSlot, so a model is loaded once per process however many steps serve it.
_SLOTS = shared.Shared()


class ModelCopies:
    """The copies of a model shared across processes (`model_copies=N`), used in turn.

    Args:
        copies: Proxies of the loaded copies.
    """

    def __init__(self, copies: List[Any]) -> None:
        self._copies = copies
        self._turns = itertools.count()

    def pick(self) -> Any:
        """Returns the copy whose turn it is (round-robin across batches)."""
        return self._copies[next(self._turns) % len(self._copies)]


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

    def _load_model(self) -> Any:
        handler = self._handler
        if not handler.share_model_across_processes():
            return handler.load_model()
        copies = [
            multi_process_shared.MultiProcessShared(
                handler.load_model, tag=f"{self._model_tag}-model-{index}", always_proxy=True
            ).acquire()
            for index in range(max(1, handler.model_copies()))
        ]
        return copies[0] if len(copies) == 1 else ModelCopies(copies)

    def _make_slot(self) -> ModelSlot:
        return ModelSlot(self._handler, self._load_model)

    def setup(self) -> None:
        self._report_metrics = not self._handler.override_metrics(self._namespace)
        self._metrics = {}
        self._slot = _SLOTS.acquire(self._make_slot, tag=self._model_tag)
        if self._refresh.enabled:
            start_refresher(self._refresh, self._slot, self._handler)
        if self._catch is None:
            self._slot.wait_for_model(self._timeout)

    def teardown(self) -> None:
        self._slot = None

    def _metrics_for(self, model_name: str) -> Optional[InferenceMetrics]:
        if not self._report_metrics:
            return None
        metrics = self._metrics.get(model_name)
        if metrics is None:
            metrics = self._metrics[model_name] = InferenceMetrics(self._namespace, model_name)
        return metrics

    def _run(
        self, serving: ServingModel, batch: Sequence[Any], inference_args: Any
    ) -> List[Any]:
        handler, model = serving.handler, serving.model
        if isinstance(model, ModelCopies):
            model = model.pick()

        def call() -> List[Any]:
            return list(handler.run_inference(batch, model, inference_args))

        results = call_with_timeout(call, self._timeout, f"inference on {len(batch)} examples")
        return serving.stamp(results)

    def _catches(self, error: BaseException) -> bool:
        return self._catch is not None and isinstance(error, self._catch)

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
            serving = slot.current() or slot.wait_for_model(self._timeout)
        except Exception as error:
            if not self._catches(error):
                raise
            base = self._metrics_for("")
            if base:
                base.failed_batches.inc()
            model_id = slot.first_model_id
            for element in batch:
                yield TaggedOutput(
                    FAILED, FailureRecord.of(element, "load_model", error, model_id)
                )
            return
        for record in self._slot_events():
            yield TaggedOutput(FAILED_MODEL_LOADS, record)
        metrics = self._metrics_for(serving.model_name)
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
                    f"(model {serving.model_id})"
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
        for element, failure in failures:
            yield TaggedOutput(
                FAILED,
                FailureRecord.of(element, "inference", failure, serving.id_for(element)),
            )

    def finish_bundle(self) -> Optional[List[Any]]:
        # A list or None, never a generator: Beam's subprocess wrapper refuses generators.
        records = [
            TaggedOutput(FAILED_MODEL_LOADS, GlobalWindows.windowed_value(record))
            for record in self._slot_events()
        ]
        return records or None
