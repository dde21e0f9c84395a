"""RunInference(...).with_rollout in a running streaming pipeline on the local runner.

A new version that loads fine but fails on its canary share is rolled back (reported on
failed_model_loads at stage "rollout"), then a good one is promoted; no row is lost. The
test acts when the pipeline reaches a state (rows seen, a rollout decided), never after a
fixed time.
"""

from __future__ import annotations

import pickle

import pytest
from liveinference import RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.rollout.policy import RolloutGates
from liveinference.rollout.roles import CANARY, STABLE, role_of
from liveinference.testing import when

from refresh_models import write_model
from rollout_scenario import Broken, shared_decision_rollout
from streams import seen, stream


def test_a_failing_canary_is_rolled_back_then_a_good_one_promoted_and_nothing_is_lost(
    run_pipeline, model_dir, refresh_log
):
    watched = model_dir / "watched"
    bad, good = str(watched / "v2.pkl"), str(watched / "v3.pkl")
    handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"), max_batch_size=8)
    steps = when([
        (seen(model_dir / "out" / "results", 10), lambda: (watched / "v2.pkl").write_bytes(pickle.dumps(Broken()))),
        (lambda: refresh_log.logged("rolled back model", bad), lambda: write_model(good, 3)),
        (lambda: refresh_log.logged("promoted model", good), lambda: "done"),
    ])
    rows = 300

    def build(p):
        stream_rows, _ = stream(p, rows=rows)
        results, dlq = stream_rows | RunInference(
            handler, watch_model_pattern=str(watched / "*.pkl"), interval=0.1
        ).with_rollout(0.5, gates=RolloutGates(min_predictions=12)).with_exception_handling()
        return {"results": results, "inferences": dlq.failed_inferences, "loads": dlq.failed_model_loads}

    out = run_pipeline(build, streaming=True)
    steps.join(timeout=5)
    results, dead = out["results"], out["inferences"]
    assert abs(len(results) + len(dead) - rows) <= 1, "every row answered or dead-lettered"
    assert dead and {record.model_id for record in dead} == {bad}
    assert [(record.stage, record.model_id) for record in out["loads"]] == [("rollout", bad)]
    served = {(role_of(r), r.model_id) for r in results}
    v1 = str(model_dir / "v1.pkl")
    assert {(STABLE, v1), (CANARY, good), (STABLE, good)} <= served
    assert not {model_id for _, model_id in served} & {bad}



SHARED_RUNNERS = {
    "local-streaming": {"streaming": True},
    "prism-streaming": {"runner": "PortableRunner", "environment_type": "LOOPBACK", "streaming": True},
}


@pytest.mark.parametrize("runner", sorted(SHARED_RUNNERS))
def test_one_decision_for_all_workers_rolls_back_a_failing_canary(
    runner, run_pipeline, model_dir, refresh_log, request
):
    """The statistics of every worker and bundle are summed by a Beam combine; the decision
    is published once on the run's channel, every worker follows it, and failed_model_loads
    gets one rollout record."""
    options = dict(SHARED_RUNNERS[runner])
    if runner.startswith("prism"):
        options["job_endpoint"] = request.getfixturevalue("prism_endpoint")
    watched = model_dir / "watched"
    bad, good = str(watched / "v2.pkl"), str(watched / "v3.pkl")
    handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"), max_batch_size=4)
    steps = when([
        (lambda: refresh_log.logged("loaded the first model"),
         lambda: (watched / "v2.pkl").write_bytes(pickle.dumps(Broken()))),
        (lambda: refresh_log.logged("rollback model", bad, "every worker"), lambda: write_model(good, 3)),
    ], timeout=120)
    rows = 400

    def build(p):
        return shared_decision_rollout(p, handler, str(watched / "*.pkl"), rows)

    out = run_pipeline(build, **options)
    steps.join(timeout=5)
    results, dead = out["results"], out["inferences"]
    assert abs(len(results) + len(dead) - rows) <= 1, "every row answered or dead-lettered"
    assert [(record.stage, record.model_id) for record in out["loads"]] == [("rollout", bad)]
    assert "errors" in out["loads"][0].message
    served = {(role_of(r), r.model_id) for r in results}
    assert not {m for _, m in served} & {bad}, "the broken canary answered nothing"
    assert {record.model_id for record in dead} == {bad}
    if runner.startswith("prism"):  # the local runner decides late: its combine runs in big bundles
        assert refresh_log.logged("promote model", good, "every worker")
        assert {(CANARY, good), (STABLE, good)} <= served
