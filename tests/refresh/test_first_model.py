"""A worker's first model is the newest good version its sources offer, not the step's own.

A worker that starts late (added to a running job, or restarted after a failure) must serve
what the other workers serve. The refresher's first poll runs before the slot loads: it
waits for watched files to settle, loads and validates the newest version offered, and the
handler's own model loads only when the sources offer nothing loadable.
"""

from __future__ import annotations

import os
from typing import List

import numpy

from liveinference import FailureRecord, ModelMetadata, RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.refresh.channel import EventChannel
from liveinference.refresh.config import RefreshConfig
from liveinference.refresh.refresher import start_refresher
from liveinference.refresh.slot import LoadReport, ModelSlot
from liveinference.refresh.validate import ModelValidation

from refresh_models import write_model

ROW = numpy.zeros(4)


class _Slot:
    """A slot whose handler's own model loads are counted."""

    def __init__(self, model_dir) -> None:
        self.handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"))
        self.own_loads: List[str] = []
        self.slot = ModelSlot(self.handler, self._load_own)

    def _load_own(self):
        self.own_loads.append(self.handler.get_model_id())
        return self.handler.load_model()

    def first(self, **config) -> tuple:
        """Starts the refresher, waits for the first model; returns (label, model_id)."""
        start_refresher(RefreshConfig(interval=0.2, **config), self.slot, self.handler)
        serving = self.slot.wait_for_model(timeout=60)
        [result] = serving.stamp(list(serving.handler.run_inference([ROW], serving.model)))
        return int(result.inference), result.model_id

    def events(self, kind: type) -> list:
        return [event for event in self.slot.take_events() if isinstance(event, kind)]


def _write_in_order(directory, *labels: int) -> List[str]:
    """Writes v<label>.pkl for each label, each modified a second after the one before."""
    paths = []
    for offset, label in enumerate(labels):
        path = write_model(str(directory / f"v{label}.pkl"), label)
        os.utime(path, (1_700_000_000 + offset, 1_700_000_000 + offset))
        paths.append(path)
    return paths


def test_a_worker_that_starts_late_serves_the_newest_watched_version(model_dir):
    _, newest = _write_in_order(model_dir / "watched", 2, 3)
    worker = _Slot(model_dir)
    assert worker.first(watch_pattern=str(model_dir / "watched" / "*.pkl")) == (3, newest)
    assert worker.own_loads == [], "the step's own model was loaded"
    assert [r.model_id for r in worker.events(LoadReport)] == [newest]


def test_a_version_published_before_the_worker_started_is_its_first_model(model_dir):
    channel = EventChannel.for_run(str(model_dir), "run1", "model")
    path = write_model(str(model_dir / "v2.pkl"), 2)
    channel.publish(ModelMetadata(path, "challenger"))
    worker = _Slot(model_dir)
    assert worker.first(channel=channel) == (2, path)
    assert worker.own_loads == []
    assert worker.slot.current().model_name == "challenger"


def test_with_nothing_offered_the_handlers_own_model_serves(model_dir):
    worker = _Slot(model_dir)
    first = str(model_dir / "v1.pkl")
    assert worker.first(watch_pattern=str(model_dir / "watched" / "*.pkl")) == (1, first)
    assert worker.own_loads == [first]


def test_a_corrupt_newest_version_is_reported_and_the_own_model_serves(model_dir):
    corrupt = model_dir / "watched" / "v2.pkl"
    corrupt.write_bytes(b"\x80\x04 not a pickle")
    worker = _Slot(model_dir)
    assert worker.first(watch_pattern=str(model_dir / "watched" / "*.pkl"))[0] == 1
    [failure] = worker.events(FailureRecord)
    assert failure.stage == "load_model" and failure.model_id == str(corrupt)
    assert worker.own_loads == [str(model_dir / "v1.pkl")]


def test_the_newest_version_must_pass_validation_to_serve_first(model_dir):
    _write_in_order(model_dir / "watched", 2)
    rejects_two = ModelValidation(
        canary_examples=[ROW], check=lambda predictions, model: predictions[0].inference != 2
    )
    worker = _Slot(model_dir)
    pattern = str(model_dir / "watched" / "*.pkl")
    assert worker.first(watch_pattern=pattern, validation=rejects_two)[0] == 1
    assert [f.stage for f in worker.events(FailureRecord)] == ["validate"]


def test_every_prediction_of_a_pipeline_started_after_a_swap_names_the_newest_model(
    run_pipeline, model_dir
):
    [newest] = _write_in_order(model_dir / "watched", 2)
    handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"))

    def build(p):
        import apache_beam as beam

        rows = p | beam.Create([numpy.full(4, float(i)) for i in range(20)])
        results, dead = rows | RunInference(
            handler, watch_model_pattern=str(model_dir / "watched" / "*.pkl"), interval=0.2
        ).with_exception_handling()
        return {"results": results, "loads": dead.failed_model_loads}

    out = run_pipeline(build)
    assert len(out["results"]) == 20 and out["loads"] == []
    assert {(int(r.inference), r.model_id) for r in out["results"]} == {(2, newest)}
