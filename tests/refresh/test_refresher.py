"""The refresher swaps good versions in and keeps the last good model on bad ones."""

from __future__ import annotations

import gc
import os
import pickle

import numpy
import pytest

from liveinference import FailureRecord, ModelMetadata
from liveinference.deadletter import FailureRecord as Record
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.refresh.refresher import Refresher
from liveinference.refresh.slot import LoadReport, ModelSlot, resident_bytes
from liveinference.refresh.channel import EventChannel
from liveinference.refresh.sources import ChannelSource, FilePatternSource
from liveinference.refresh.validate import ModelValidation

from refresh_models import constant_model, write_model

ROW = numpy.zeros(4)


def _predict(slot):
    serving = slot.current()
    [result] = serving.stamp(list(serving.handler.run_inference([ROW], serving.model)))
    return int(result.inference), result.model_id


def _refresher(slot, handler, pattern, **kwargs):
    return Refresher(slot, handler, [FilePatternSource(pattern)], interval=0.1, **kwargs)


def _poll_until_quiet(refresher, polls=3):
    for _ in range(polls):
        refresher.poll_once()


@pytest.fixture
def slot_and_handler(model_dir):
    handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"))
    slot = ModelSlot(handler, handler.load_model)
    slot.wait_for_model()
    return slot, handler


def test_a_new_file_is_swapped_in_and_names_its_predictions(model_dir, slot_and_handler):
    slot, handler = slot_and_handler
    refresher = _refresher(slot, handler, str(model_dir / "watched" / "*.pkl"))
    assert _predict(slot) == (1, str(model_dir / "v1.pkl"))
    new = write_model(str(model_dir / "watched" / "v2.pkl"), 2)
    _poll_until_quiet(refresher)
    assert _predict(slot) == (2, new)
    assert slot.current().model_name == "v2"
    reports = [e for e in slot.take_events() if isinstance(e, LoadReport)]
    assert [r.model_id for r in reports] == [str(model_dir / "v1.pkl"), new]
    assert handler.get_model_id() == str(model_dir / "v1.pkl"), "the serving handler is never mutated"


def test_a_corrupt_file_is_reported_and_the_last_good_model_keeps_serving(model_dir, slot_and_handler):
    slot, handler = slot_and_handler
    refresher = _refresher(slot, handler, str(model_dir / "watched" / "*.pkl"))
    write_model(str(model_dir / "watched" / "v2.pkl"), 2)
    _poll_until_quiet(refresher)
    slot.take_events()
    corrupt = model_dir / "watched" / "v3.pkl"
    corrupt.write_bytes(b"\x80\x04 not a pickle")
    _poll_until_quiet(refresher)
    assert _predict(slot)[0] == 2
    [failure] = slot.take_events()
    assert isinstance(failure, Record) and failure.stage == "load_model"
    assert failure.model_id == str(corrupt) and "v3.pkl" in failure.message
    assert failure.element == ModelMetadata(str(corrupt), "v3")
    _poll_until_quiet(refresher)
    assert slot.take_events() == [], "the same bad file is not retried"
    write_model(str(corrupt), 3)
    _poll_until_quiet(refresher)
    assert _predict(slot)[0] == 3, "a bad file that changes is tried again"


def test_validation_rejects_a_model_and_keeps_the_last_good(model_dir, slot_and_handler):
    slot, handler = slot_and_handler
    validation = ModelValidation(
        canary_examples=[ROW], check=lambda predictions, model: predictions[0].inference != 9
    )
    refresher = _refresher(slot, handler, str(model_dir / "watched" / "*.pkl"), validation=validation)
    write_model(str(model_dir / "watched" / "v9.pkl"), 9)
    _poll_until_quiet(refresher)
    assert _predict(slot)[0] == 1
    failures = [e for e in slot.take_events() if isinstance(e, FailureRecord)]
    assert [f.stage for f in failures] == ["validate"]
    assert "rejected by the validation check" in failures[0].message


def test_canary_examples_that_fail_reject_the_model(model_dir, slot_and_handler):
    slot, handler = slot_and_handler
    validation = ModelValidation(canary_examples=[numpy.zeros(3)])
    refresher = _refresher(slot, handler, str(model_dir / "watched" / "*.pkl"), validation=validation)
    write_model(str(model_dir / "watched" / "v2.pkl"), 2)
    _poll_until_quiet(refresher)
    assert _predict(slot)[0] == 1
    [failure] = [e for e in slot.take_events() if isinstance(e, FailureRecord)]
    assert failure.stage == "validate" and "canary" in failure.message


def test_events_from_a_channel_swap_the_model(model_dir, slot_and_handler):
    slot, handler = slot_and_handler
    channel = EventChannel.for_run(str(model_dir), "run1", "model")
    refresher = Refresher(slot, handler, [ChannelSource(channel)], interval=0.1)
    path = write_model(str(model_dir / "v2.pkl"), 2)
    channel.publish(ModelMetadata(path, "challenger"))
    refresher.poll_once()
    assert _predict(slot) == (2, path)
    assert slot.current().model_name == "challenger"


def test_a_batch_in_flight_finishes_on_the_model_it_started_with(model_dir, slot_and_handler):
    slot, handler = slot_and_handler
    started_with = slot.current()
    refresher = _refresher(slot, handler, str(model_dir / "watched" / "*.pkl"))
    write_model(str(model_dir / "watched" / "v2.pkl"), 2)
    _poll_until_quiet(refresher)
    [result] = started_with.handler.run_inference([ROW], started_with.model)
    assert int(result.inference) == 1
    assert _predict(slot)[0] == 2


def test_fifty_refreshes_do_not_keep_growing_memory(tmp_path):
    big = numpy.random.default_rng(0).normal(size=(500_000,))
    watched = tmp_path / "watched"
    watched.mkdir()

    def write_big(label):
        model = constant_model(label)
        model.payload_ = big + label
        path = watched / "model.pkl"
        temporary = tmp_path / "model.tmp"
        with open(temporary, "wb") as file:
            pickle.dump(model, file)
        os.utime(temporary, (1000 + label, 1000 + label))
        os.replace(temporary, path)

    write_big(0)
    handler = SklearnModelHandlerNumpy(str(watched / "model.pkl"))
    slot = ModelSlot(handler, handler.load_model)
    slot.wait_for_model()
    refresher = _refresher(slot, handler, str(watched / "*.pkl"))
    rss = []
    for label in range(1, 51):
        write_big(label)
        _poll_until_quiet(refresher, polls=2)
        assert _predict(slot)[0] == label
        slot.take_events()
        gc.collect()
        rss.append(resident_bytes())
    model_bytes = big.nbytes
    assert max(rss[10:]) - rss[9] < max(3 * model_bytes, 32 * 2**20), [r // 2**20 for r in rss]
