"""A refresher ends with its pipeline: once no DoFn has served from its slot for an interval.

Beam's `Shared` keeps the last slot alive in a long-lived process (a notebook, a test run, a
service), so the slot outliving its pipeline must not keep a refresher polling.
"""

from __future__ import annotations

import threading

import apache_beam as beam
import numpy
import pytest

from liveinference import RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.refresh.config import RefreshConfig
from liveinference.refresh.refresher import start_refresher
from liveinference.refresh.slot import ModelSlot
from liveinference.testing import wait_until


def _refreshers(model_path):
    return [
        thread for thread in threading.enumerate()
        if thread.name == f"liveinference-refresh {model_path}"
    ]


def test_the_refresher_ends_once_no_dofn_serves_from_its_slot_and_a_new_user_restarts_it(model_dir):
    first = str(model_dir / "v1.pkl")
    handler = SklearnModelHandlerNumpy(first)
    slot = ModelSlot(handler, handler.load_model)
    config = RefreshConfig(watch_pattern=str(model_dir / "watched" / "*.pkl"), interval=0.05)
    slot.attach()
    start_refresher(config, slot, handler)
    [thread] = _refreshers(first)
    slot.attach()
    slot.detach()
    assert thread.is_alive(), "one DoFn still serves"
    slot.detach()
    wait_until(lambda: not thread.is_alive(), 30, "the refresher of an unused slot to end")
    slot.attach()
    start_refresher(config, slot, handler)
    [restarted] = _refreshers(first)
    assert restarted is not thread and restarted.is_alive()
    slot.detach()
    wait_until(lambda: not restarted.is_alive(), 30, "the second refresher to end")


@pytest.mark.parametrize("runner", ["local", "prism"])
def test_a_finished_pipelines_refresher_stops_polling(runner, run_pipeline, model_dir, request):
    first = str(model_dir / "v1.pkl")
    options = {}
    if runner == "prism":
        options = {"runner": "PortableRunner", "environment_type": "LOOPBACK",
                   "job_endpoint": request.getfixturevalue("prism_endpoint")}

    def build(p):
        rows = p | beam.Create([numpy.zeros(4)] * 8)
        return {"results": rows | RunInference(
            SklearnModelHandlerNumpy(first),
            watch_model_pattern=str(model_dir / "watched" / "*.pkl"),
            interval=0.05,
        )}

    assert len(run_pipeline(build, **options)["results"]) == 8
    wait_until(lambda: not _refreshers(first), 30, "the finished pipeline's refresher to end")
