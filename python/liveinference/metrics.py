"""Beam metrics of RunInference, under the handler's namespace, prefixed by model name."""

from __future__ import annotations

from typing import Any, Dict

from apache_beam.metrics import Metrics

__all__ = ["InferenceMetrics"]


class InferenceMetrics:
    """Counters and distributions of one RunInference step, named as Beam names them.

    Metric objects are made once here, in `setup()`, never per batch. Call the methods on
    the processing thread: Beam has no metrics context on other threads.

    Args:
        namespace: The metrics namespace (the handler's, or RunInference's argument).
        prefix: Prepended as "<prefix>_" to each name; the model name after a refresh.
    """

    def __init__(self, namespace: str, prefix: str = "") -> None:
        lead = f"{prefix}_" if prefix else ""
        self.inferences = Metrics.counter(namespace, lead + "num_inferences")
        self.failed_batches = Metrics.counter(namespace, lead + "failed_batches_counter")
        self.batch_size = Metrics.distribution(namespace, lead + "inference_request_batch_size")
        self.batch_byte_size = Metrics.distribution(
            namespace, lead + "inference_request_batch_byte_size"
        )
        self.batch_latency_us = Metrics.distribution(
            namespace, lead + "inference_batch_latency_micro_secs"
        )
        self.load_latency_ms = Metrics.distribution(
            namespace, lead + "load_model_latency_milli_secs"
        )
        self.model_byte_size = Metrics.distribution(namespace, lead + "model_byte_size")
        self.failed_model_loads = Metrics.counter(namespace, lead + "failed_model_loads")
        self._namespace, self._lead = namespace, lead
        self._roles: Dict[str, Any] = {}

    def record_batch(self, size: int, byte_size: int, latency_us: int) -> None:
        """Reports one inference call on `size` examples."""
        self.inferences.inc(size)
        self.batch_size.update(size)
        self.batch_byte_size.update(byte_size)
        self.batch_latency_us.update(latency_us)

    def record_role(self, role: str, count: int) -> None:
        """Counts `count` predictions made in `role` during a rollout, as
        "<prefix>_<role>_num_inferences" (e.g. "canary_num_inferences")."""
        counter = self._roles.get(role)
        if counter is None:
            name = f"{self._lead}{role}_num_inferences"
            counter = self._roles[role] = Metrics.counter(self._namespace, name)
        counter.inc(count)

    def record_load(self, latency_ms: int, byte_size: int) -> None:
        """Reports one model load: its latency and the memory it took."""
        self.load_latency_ms.update(latency_ms)
        self.model_byte_size.update(byte_size)
