"""RemoteModelHandler: a handler whose model is a server, called with retries and throttling.

A drop-in for Beam's `ml.inference.base.RemoteModelHandler` (Beam 2.6x+; Beam 2.62 has
none, so this one serves both): a subclass writes `create_client()` (what `load_model`
returns) and `request(batch, client, inference_args)` (one call to the server), and this
base does the rest as Beam does:

- each call is first held by client-side adaptive throttling (Beam's `AdaptiveThrottler`,
  the algorithm of Google's SRE book): when many recent calls failed, calls wait
  `throttle_delay_secs` at a time before they go out, so a struggling server sees less load;
- a call that raises is retried with exponential backoff, up to `num_retries` more times,
  while `retry_filter(error)` says so; then the last error is raised. An error the filter
  accepted until the retries ran out is the server's, not the examples': it is marked
  (`errors.mark_whole_batch_failure`), so RunInference dead-letters the whole batch
  instead of splitting it to look for bad examples, which would call the failing server
  again for every part;
- an optional `rate_limiter` (anything with Beam's `allow(hits_added=n)`) is asked first.

Metrics, in the handler's `namespace`: Beam's `cumulativeThrottlingSeconds` (whole seconds
spent throttled) and `throttled_requests` (calls held back at least once; the name Beam's
RequestResponseIO gives it). RunInference reports its own metrics as for any handler.
"""

from __future__ import annotations

import abc
import logging
import random
import threading
import time
from typing import Any, Callable, Dict, Iterable, Optional, Sequence

from apache_beam.io.components.adaptive_throttler import AdaptiveThrottler
from apache_beam.metrics import Metrics

from liveinference.contract import ExampleT, ModelHandler, ModelT, PredictionT
from liveinference.errors import mark_whole_batch_failure

__all__ = ["RateLimitExceeded", "RemoteModelHandler", "retry_always"]


class RateLimitExceeded(RuntimeError):
    """The `rate_limiter` refused a batch; it is retried as any failed call is."""


def retry_always(error: Exception) -> bool:
    """Beam's default `retry_filter`: every failed call is retried.

    Args:
        error: The exception the call raised.

    Returns:
        True.
    """
    return True


class _Throttle:
    """Beam's client-side adaptive throttling with its metrics, safe to share by threads.

    One handler object serves every thread of a worker process, so the throttler's
    bookkeeping is guarded by a lock (made again when the handler is unpickled).
    """

    def __init__(
        self,
        namespace: str,
        delay_secs: float,
        window_ms: int,
        bucket_ms: int,
        overload_ratio: float,
    ) -> None:
        self._throttler = AdaptiveThrottler(window_ms, bucket_ms, overload_ratio)
        self._delay_secs = delay_secs
        self._throttled_secs = Metrics.counter(namespace, "cumulativeThrottlingSeconds")
        self._throttled_requests = Metrics.counter(namespace, "throttled_requests")
        self._unreported_secs = 0.0
        self._logger = logging.getLogger(namespace)
        self._lock = threading.Lock()

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _should_wait(self) -> bool:
        with self._lock:
            return bool(self._throttler.throttle_request(time.time() * 1000))

    def wait_turn(self) -> None:
        """Holds the caller while throttling says so; reports the time and the request."""
        if not self._should_wait():
            return
        self._throttled_requests.inc()
        waited = 0.0
        while True:
            self._logger.info(
                "delaying a request to the model server %gs: too many recent requests failed",
                self._delay_secs,
            )
            time.sleep(self._delay_secs)
            waited += self._delay_secs
            if not self._should_wait():
                break
        self._report_wait(waited)

    def _report_wait(self, waited: float) -> None:
        with self._lock:
            self._unreported_secs += waited
            whole = int(self._unreported_secs)
            self._unreported_secs -= whole
        if whole:
            self._throttled_secs.inc(whole)

    def succeeded(self, sent_at_ms: float) -> None:
        """Tells the throttler that the request sent at `sent_at_ms` succeeded."""
        with self._lock:
            self._throttler.successful_request(sent_at_ms)


class RemoteModelHandler(ModelHandler[ExampleT, PredictionT, ModelT], abc.ABC):
    """A handler that calls a model at a remote endpoint, with retries and throttling.

    Subclasses implement `create_client` and `request`, never `load_model` or
    `run_inference` (as in Beam, overriding those is refused). `inference_args` are
    handed to `request` unchecked.

    Args:
        namespace: The namespace of the throttling metrics and of the log; defaults to
            the class name (Beam 2.77 refuses an empty one when it builds its metrics).
        num_retries: How many times a failed call is retried before its error is raised.
        throttle_delay_secs: How long a throttled call waits before it asks again.
        retry_filter: `fn(error) -> bool`; a call is retried only when it returns True.
            The default retries every error, as Beam's does. An error it accepts is taken
            for the server's: once the retries run out, the whole batch fails with it. Let
            it refuse errors caused by particular examples (an HTTP 400), so that
            RunInference can find those examples and predict the rest.
        window_ms: How far back, in ms, throttling looks at requests and successes.
        bucket_ms: The granularity, in ms, of that history.
        overload_ratio: The ratio of requests to successes above which calls are
            throttled ("K" in the SRE book's formula).
        rate_limiter: An object with `allow(hits_added=n) -> bool` (e.g. Beam's
            `EnvoyRateLimiter`), asked before each call with the batch size; a refusal
            raises `RateLimitExceeded`.
        initial_backoff_secs: The wait before the first retry (not in Beam, which waits
            5 s); each further wait doubles, with up to half taken off at random.
        max_backoff_secs: The longest wait between two tries (not in Beam: one hour).

    Raises:
        TypeError: when a subclass overrides `load_model` or `run_inference`.
        ValueError: for a negative `num_retries` or backoff, a `throttle_delay_secs` that
            is not positive, or `bucket_ms` not in (0, `window_ms`].
    """

    def __init__(
        self,
        namespace: str = "",
        num_retries: int = 5,
        throttle_delay_secs: float = 5,
        retry_filter: Callable[[Exception], bool] = retry_always,
        *,
        window_ms: int = 1000,
        bucket_ms: int = 1000,
        overload_ratio: float = 2,
        rate_limiter: Any = None,
        initial_backoff_secs: float = 5.0,
        max_backoff_secs: float = 3600.0,
    ) -> None:
        # ModelHandler.__init__ is not called, as in Beam: subclasses written for Beam set
        # attributes such as `_env_vars` before calling this, and keep them.
        if num_retries < 0 or initial_backoff_secs < 0 or max_backoff_secs < 0:
            raise ValueError(
                f"num_retries ({num_retries}), initial_backoff_secs ({initial_backoff_secs}) "
                f"and max_backoff_secs ({max_backoff_secs}) must not be negative"
            )
        if not throttle_delay_secs > 0:
            raise ValueError(
                f"throttle_delay_secs must be positive, got {throttle_delay_secs}: a throttled "
                "call asks again after that long, and with 0 it would spin"
            )
        if not 0 < bucket_ms <= window_ms:
            raise ValueError(
                f"bucket_ms ({bucket_ms}) must be above 0 and at most window_ms ({window_ms}): "
                "throttling keeps window_ms of history in buckets of bucket_ms"
            )
        self._namespace = namespace or type(self).__name__
        self.num_retries = num_retries
        self.retry_filter = retry_filter
        self._rate_limiter = rate_limiter
        self._initial_backoff_secs = initial_backoff_secs
        self._max_backoff_secs = max_backoff_secs
        self.throttler = _Throttle(
            self._namespace, throttle_delay_secs, window_ms, bucket_ms, overload_ratio
        )
        self.logger = logging.getLogger(self._namespace)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for method, instead in (("load_model", "create_client"), ("run_inference", "request")):
            if getattr(cls, method) is not getattr(RemoteModelHandler, method):
                raise TypeError(
                    f"{cls.__name__} overrides RemoteModelHandler.{method}; implement "
                    f"{instead}() instead, so that retries and throttling still apply"
                )

    @abc.abstractmethod
    def create_client(self) -> ModelT:
        """Creates the client `request` calls the server with; no request is made here.

        Returns:
            The client, which RunInference holds as the model.
        """

    @abc.abstractmethod
    def request(
        self,
        batch: Sequence[ExampleT],
        model: ModelT,
        inference_args: Optional[Dict[str, Any]] = None,
    ) -> Iterable[PredictionT]:
        """Sends one batch to the server and returns its predictions.

        Raise on any failure, so that it is retried and counted by throttling; return a
        list, not a generator, whose errors would escape the retries.

        Args:
            batch: The examples.
            model: The client `create_client` returned.
            inference_args: Extra arguments for the server, as given to RunInference.

        Returns:
            One prediction per example, in order.
        """

    def load_model(self) -> ModelT:
        """Returns `create_client()`."""
        return self.create_client()

    def run_inference(
        self,
        batch: Sequence[ExampleT],
        model: ModelT,
        inference_args: Optional[Dict[str, Any]] = None,
    ) -> Iterable[PredictionT]:
        """Calls `request` with throttling and retries.

        Args:
            batch: The examples.
            model: The client `create_client` returned.
            inference_args: Extra arguments for the server.

        Returns:
            What `request` returned.

        Raises:
            Exception: the error of the last try, when `retry_filter` refuses it or the
                retries are used up; a note on it says how many tries were made. In the
                second case it is marked as a failure of the whole batch.
        """
        delay, attempt = self._initial_backoff_secs, 0
        while True:
            attempt += 1
            try:
                return self._attempt(batch, model, inference_args)
            except Exception as error:
                if not self.retry_filter(error):
                    error.add_note(f"not retried: retry_filter refused {type(error).__name__}")
                    raise
                if attempt > self.num_retries:
                    error.add_note(
                        f"gave up after {attempt} tries (num_retries={self.num_retries}); "
                        f"the whole batch of {len(batch)} examples failed with it"
                    )
                    self.logger.error("request failed %d times, giving up: %s", attempt, error)
                    mark_whole_batch_failure(error)
                    raise
                wait = min(delay, self._max_backoff_secs) * random.uniform(0.5, 1.0)
                self.logger.warning(
                    "request failed (try %d of %d), retrying in %.3gs: %s",
                    attempt, self.num_retries + 1, wait, error,
                )
                time.sleep(wait)
                delay *= 2

    def _attempt(
        self, batch: Sequence[ExampleT], model: ModelT, inference_args: Optional[Dict[str, Any]]
    ) -> Iterable[PredictionT]:
        if self._rate_limiter is not None and not self._rate_limiter.allow(hits_added=len(batch)):
            raise RateLimitExceeded(
                f"the rate limiter refused a batch of {len(batch)} examples; it is retried "
                "with backoff, or raise the limit"
            )
        self.throttler.wait_turn()
        sent_at_ms = time.time() * 1000
        predictions = self.request(batch, model, inference_args)
        self.throttler.succeeded(sent_at_ms)
        return predictions

    def validate_inference_args(self, inference_args: Optional[Dict[str, Any]]) -> None:
        """Accepts any `inference_args`: `request` hands them to the server."""
