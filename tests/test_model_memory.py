"""A model that no longer serves is freed: after a swap, and after a load or batch timed out.

A thread cannot be stopped: a call that runs past its timeout keeps what it was given until
it returns. These tests check that nothing keeps a model after that (issue 10, item 5).
"""

from __future__ import annotations

import gc
import threading
import uuid
import weakref

import pytest
from apache_beam.pvalue import TaggedOutput

from liveinference.dofn import InferenceDoFn
from liveinference.refresh.config import RefreshConfig
from liveinference.refresh.slot import ModelSlot, ServingModel
from liveinference.testing import (
    ConstantModel,
    ConstantModelHandler,
    FaultOnMark,
    wait_until,
    write_constant_model,
)
from liveinference.timeouts import call_with_timeout

HANG = -1.0


def _freed(ref):
    gc.collect()
    return ref() is None


def test_the_first_model_is_freed_once_another_serves(tmp_path):
    handler = ConstantModelHandler(write_constant_model(str(tmp_path / "v1.txt"), 1))
    slot = ModelSlot(handler, handler.load_model)
    first = weakref.ref(slot.wait_for_model().model)
    newer = ConstantModelHandler(write_constant_model(str(tmp_path / "v2.txt"), 2))
    slot.swap(ServingModel(newer.get_model_id(), newer.load_model(), newer, "v2"))
    wait_until(lambda: _freed(first), timeout=10, what="the first model to be freed")
    assert slot.current().model.label == 2


def test_a_load_that_ran_past_its_timeout_does_not_keep_its_model():
    release = threading.Event()
    loaded = []

    def load():
        release.wait()
        model = ConstantModel(1, "late.txt")
        loaded.append(weakref.ref(model))
        return model

    with pytest.raises(TimeoutError, match="loading model late.txt took longer") as caught:
        call_with_timeout(load, 0.05, "loading model late.txt")
    release.set()
    wait_until(lambda: loaded, timeout=10, what="the late load to finish")
    # The error is still held (as a dead letter list or a log record may hold it).
    assert caught.value is not None
    wait_until(lambda: _freed(loaded[0]), timeout=10, what="the late model to be freed")


class _TrackedHandler(ConstantModelHandler):
    """Keeps a weak reference to each model it loads."""

    loaded: list = []

    def load_model(self):
        model = super().load_model()
        self.loaded.append(weakref.ref(model))
        return model


def _predictions(dofn, batch):
    return [output for output in dofn.process(batch) if not isinstance(output, TaggedOutput)]


def test_a_batch_that_timed_out_keeps_its_model_only_until_it_returns(tmp_path):
    release = threading.Event()
    (tmp_path / "watched").mkdir()
    tracked = _TrackedHandler(write_constant_model(str(tmp_path / "v1.txt"), 1))
    tracked.loaded = []
    handler = FaultOnMark(tracked, HANG, "hang", release=release)
    refresh = RefreshConfig(watch_pattern=str(tmp_path / "watched" / "*.txt"), interval=0.05)
    dofn = InferenceDoFn(handler, "test", uuid.uuid4().hex, Exception, 0.2, refresh)
    dofn.setup()
    try:
        [timed_out] = [o.value for o in dofn.process([HANG]) if isinstance(o, TaggedOutput)]
        assert timed_out.exception_type == "builtins.TimeoutError"
        second = write_constant_model(str(tmp_path / "watched" / "v2.txt"), 2)
        wait_until(
            lambda: [r.model_id for r in _predictions(dofn, [0.0])] == [second],
            what="v2 to serve",
        )
        first = tracked.loaded[0]
        assert first() is not None, "the hung batch still runs on the first model"
        release.set()
        wait_until(lambda: _freed(first), timeout=10, what="the first model to be freed")
    finally:
        release.set()
        dofn.teardown()
