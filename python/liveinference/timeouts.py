"""Run a call on its own thread and wait for it with a time limit."""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, Callable, Optional

from apache_beam.runners.worker import statesampler

__all__ = ["call_with_timeout", "start_in_thread", "wait_for"]


def start_in_thread(fn: Callable[[], Any], name: str) -> "concurrent.futures.Future[Any]":
    """Starts `fn` on a new daemon thread and returns a future of its result.

    A daemon thread is used so that a call that never returns cannot keep the worker
    process from exiting.
    """
    future: "concurrent.futures.Future[Any]" = concurrent.futures.Future()

    def target() -> None:
        try:
            future.set_result(fn())
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
            future.set_exception(error)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


def wait_for(future: "concurrent.futures.Future[Any]", timeout: Optional[float], what: str) -> Any:
    """Returns the future's result, waiting at most `timeout` seconds (None: no limit).

    Raises:
        TimeoutError: naming `what` and the limit, if the result is not ready in time.
        Exception: whatever the call raised.
    """
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        raise TimeoutError(
            f"{what} took longer than the timeout of {timeout}s; raise the timeout given "
            "to with_exception_handling() or make the step faster"
        ) from None


def call_with_timeout(fn: Callable[[], Any], timeout: Optional[float], what: str) -> Any:
    """Calls `fn`, on its own thread when `timeout` is set, and returns its result.

    Raises:
        TimeoutError: if `timeout` is set and `fn` does not return in time.
        Exception: whatever `fn` raised.
    """
    if timeout is None:
        return fn()
    tracker = statesampler.get_current_tracker()

    def with_metrics_context() -> Any:
        # Beam finds the step's metrics through the thread's state tracker; carry it over
        # so that metrics updated inside `fn` are not dropped.
        statesampler.set_current_tracker(tracker)
        try:
            return fn()
        finally:
            statesampler.set_current_tracker(None)

    return wait_for(start_in_thread(with_metrics_context, what), timeout, what)
