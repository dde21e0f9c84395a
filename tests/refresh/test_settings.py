"""Numeric settings are finite and in range everywhere; the refresh thread survives any error."""

from __future__ import annotations

import math

import apache_beam as beam
import numpy
import pytest

from liveinference import ModelMetadata, RunInference, WatchFilePattern
from liveinference.deadletter import FailureRecord
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.refresh.refresher import Refresher
from liveinference.refresh.slot import ModelSlot
from liveinference.refresh.sources import FilePatternSource, Version
from liveinference.settings import checked_number
from liveinference.testing import wait_until

from refresh_models import write_model

BAD_SECONDS = [math.nan, math.inf, -math.inf, 0, -1]


def _handler():
    return SklearnModelHandlerNumpy("/m/v1.pkl")


@pytest.mark.parametrize("value", BAD_SECONDS)
def test_run_inference_refuses_a_non_finite_or_non_positive_interval(value):
    with pytest.raises(ValueError, match=r"interval must be a positive number of seconds, finite .*, got"):
        RunInference(_handler(), watch_model_pattern="/m/*.pkl", interval=value)


@pytest.mark.parametrize("value", BAD_SECONDS)
def test_exception_handling_refuses_a_non_finite_or_non_positive_timeout(value):
    with pytest.raises(ValueError, match=r"timeout must be a positive number of seconds, finite .*, got"):
        RunInference(_handler()).with_exception_handling(timeout=value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -0.1, 1.5])
def test_exception_handling_refuses_a_threshold_outside_zero_to_one(value):
    with pytest.raises(ValueError, match=r"threshold must be a number between 0 and 1, finite"):
        RunInference(_handler()).with_exception_handling(threshold=value)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_stop_timestamp_and_watch_interval_must_be_finite(value):
    with pytest.raises(ValueError, match="stop_timestamp must be"):
        RunInference(_handler(), watch_model_pattern="/m/*.pkl", stop_timestamp=value)
    with pytest.raises(ValueError, match="interval must be a positive number of seconds"):
        WatchFilePattern("/m/*.pkl", interval=value)


def test_a_setting_that_is_not_a_number_is_a_type_error():
    with pytest.raises(TypeError, match="interval must be a number of seconds, got str '5'"):
        checked_number("interval", "5")
    with pytest.raises(TypeError, match="got bool True"):
        checked_number("timeout", True)
    assert checked_number("threshold", 0, unit="", at_most=1, zero_allowed=True) == 0.0


class _Unexpected(BaseException):
    """An error outside Exception, as some native extensions raise."""


class _FailingSource:
    """A source whose first polls raise something unexpected, then offers `version`."""

    def __init__(self, version: Version, failures: int) -> None:
        self._version = version
        self._failures = failures
        self.settling = False

    def poll(self):
        if self._failures:
            self._failures -= 1
            raise _Unexpected("the listing service went away")
        return self._version


class _FailingLoads(SklearnModelHandlerNumpy):
    """Loads of `bad_path` raise a BaseException that is not an Exception."""

    bad_path = ""

    def load_model(self):
        if self.get_model_id() == self.bad_path:
            raise _Unexpected(f"native loader crashed on {self.get_model_id()}")
        return super().load_model()


def test_the_refresh_thread_survives_unexpected_errors_and_serves_a_later_good_model(model_dir):
    bad, good = str(model_dir / "bad.pkl"), write_model(str(model_dir / "v2.pkl"), 2)
    write_model(bad, 3)
    _FailingLoads.bad_path = bad
    handler = _FailingLoads(str(model_dir / "v1.pkl"))
    slot = ModelSlot(handler, handler.load_model)
    slot.wait_for_model()
    first = _FailingSource(Version(ModelMetadata(bad, "bad"), ("bad",)), failures=2)
    second = _FailingSource(Version(ModelMetadata(good, "v2"), ("good",)), failures=3)
    refresher = Refresher(slot, handler, [first, second], interval=0.05)
    refresher.start()
    wait_until(lambda: slot.current().model_id == good, 30, "the good model to serve")
    records = [event for event in slot.take_events() if isinstance(event, FailureRecord)]
    stages = sorted(record.stage for record in records)
    assert stages == ["load_model", "poll", "poll"], "each source reported once, the bad load once"
    [load] = [record for record in records if record.stage == "load_model"]
    assert load.model_id == bad and "native loader crashed" in load.message


def test_a_poll_failure_before_any_model_serves_names_the_first_model(model_dir):
    first = str(model_dir / "v1.pkl")
    handler = SklearnModelHandlerNumpy(first)
    slot = ModelSlot(handler, handler.load_model)  # not loaded: nothing serves yet
    source = _FailingSource(Version(ModelMetadata(first, "v1"), ("v1",)), failures=1)
    Refresher(slot, handler, [source], interval=0.05).poll_once()
    [record] = [event for event in slot.take_events() if isinstance(event, FailureRecord)]
    assert (record.stage, record.model_id) == ("poll", first)


def test_the_service_builder_refuses_non_finite_intervals():
    transform = pytest.importorskip(
        "liveinference_expansion.transform", reason="the expansion package is not installed"
    )
    for value in (math.nan, math.inf, 0):
        with pytest.raises(ValueError, match="interval must be a positive number of seconds"):
            transform.ConfiguredRunInference(
                "sklearn_numpy", {"model_uri": "/m/v1.pkl"}, watch_model_pattern="/m/*.pkl",
                interval=value,
            )


def test_a_nan_interval_never_reaches_a_running_pipeline(model_dir):
    with pytest.raises(ValueError, match="interval"):
        _ = beam.Pipeline() | beam.Create([numpy.zeros(4)]) | RunInference(
            SklearnModelHandlerNumpy(str(model_dir / "v1.pkl")),
            watch_model_pattern=str(model_dir / "watched" / "*.pkl"),
            interval=float("nan"),
        )


def test_the_refresher_itself_refuses_a_nan_interval(model_dir):
    handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"))
    slot = ModelSlot(handler, handler.load_model)
    with pytest.raises(ValueError, match="interval"):
        Refresher(slot, handler, [FilePatternSource("/m/*.pkl")], interval=math.nan)
