"""Run a call on its own thread and wait for it with a time limit.

A thread cannot be stopped. A call that runs past its timeout goes on until it returns,
and the objects it was given (a model, a batch) stay in memory until then. Nothing else is
kept for it: the waiting side drops its references and abandons the call, and the result
of an abandoned call is discarded when it arrives, so a late model load does not hold its
model and a late batch does not hold its results.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from typing import Any, Callable, Optional

from apache_beam.runners.worker import statesampler

from liveinference.errors import mark_whole_batch_failure

__all__ = ["call_with_timeout", "start_in_thread", "wait_for"]


def start_in_thread(fn: Callable[[], Any], name: str) -> "concurrent.futures.Future[Any]":
    """Starts `fn` on a new daemon thread and returns a future of its result.

    A daemon thread is used so that a call that never returns cannot keep the worker
    process from exiting. Cancelling the future abandons the call: its result or error is
    dropped when it arrives.
    """
    future: "concurrent.futures.Future[Any]" = concurrent.futures.Future()

    def target() -> None:
        # A cancelled (abandoned) future refuses the outcome; the outcome is then dropped.
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            try:
                result = fn()
            except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
                future.set_exception(error)
            else:
                future.set_result(result)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


def wait_for(
    future: "concurrent.futures.Future[Any]",
    timeout: Optional[float],
    what: str,
    abandon: bool = False,
) -> Any:
    """Returns the future's result, waiting at most `timeout` seconds (None: no limit).

    Args:
        future: The result to wait for.
        timeout: The most seconds to wait.
        what: Names the call in the error.
        abandon: Cancel the future on timeout, so its late result is dropped; leave it
            False when other callers may still wait for the same result.

    Raises:
        TimeoutError: naming `what` and the limit, if the result is not ready in time;
            marked by `errors.mark_whole_batch_failure` (a batch that ran out of time
            failed as a whole, not by any of its examples).
        Exception: whatever the call raised.
    """
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        pass
    # Raised outside the except block, so the error does not chain to the future.
    if abandon:
        future.cancel()
    raise mark_whole_batch_failure(TimeoutError(
        f"{what} took longer than the timeout of {timeout:g}s; raise the timeout given "
        "to with_exception_handling() or make the step faster"
    ))


def _carrying_tracker(fn: Callable[[], Any]) -> Callable[[], Any]:
    tracker = statesampler.get_current_tracker()

    def with_metrics_context() -> Any:
        # Beam finds the step's metrics through the thread's state tracker; carry it over
        # so that metrics updated inside `fn` are not dropped.
        statesampler.set_current_tracker(tracker)
        try:
            return fn()
        finally:
            statesampler.set_current_tracker(None)

    return with_metrics_context


def call_with_timeout(fn: Callable[[], Any], timeout: Optional[float], what: str) -> Any:
    """Calls `fn`, on its own thread when `timeout` is set, and returns its result.

    On timeout the call is abandoned: it runs on, holding what `fn` holds, until it
    returns; its result is then dropped.

    Raises:
        TimeoutError: if `timeout` is set and `fn` does not return in time.
        Exception: whatever `fn` raised.
    """
    if timeout is None:
        return fn()
    future = start_in_thread(_carrying_tracker(fn), what)
    # A kept TimeoutError holds this frame: it must not hold `fn` (and so the model).
    del fn
    return wait_for(future, timeout, what, abandon=True)
