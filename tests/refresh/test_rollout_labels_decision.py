"""Labels feed the shared rollout decision (`with_rollout(labels=JoinLabels(...))`) on Prism.

A new version that loads and answers fine but is wrong on the labels waits for them, is
rolled back by the accuracy gate (failed_model_loads shows both accuracies), then a right one
is promoted; every row is answered or dead-lettered. The test acts when the pipeline reaches
a state (a decision logged), never after a fixed time.
"""

from __future__ import annotations

import apache_beam as beam
from liveinference import RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.rollout.labels import JoinLabels
from liveinference.rollout.policy import RolloutGates
from liveinference.rollout.roles import CANARY, STABLE, role_of
from liveinference.testing import when

from refresh_models import write_model
from streams import stream

TRUTH = 1  # every row's label: v1 and v3 predict it, v2 predicts 2


def _row_id(example):
    return int(example[1])


def test_a_model_wrong_on_labels_is_rolled_back_by_them_and_a_right_one_promoted(
    run_pipeline, model_dir, refresh_log, prism_endpoint
):
    watched = model_dir / "watched"
    wrong, right = str(watched / "v2.pkl"), str(watched / "v3.pkl")
    handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"), max_batch_size=4)
    steps = when([
        (lambda: refresh_log.logged("loaded the first model"), lambda: write_model(wrong, 2)),
        (lambda: refresh_log.logged("rollback model", wrong, "every worker"),
         lambda: write_model(right, TRUTH)),
        (lambda: refresh_log.logged("promote model", right, "every worker"), lambda: "done"),
    ], timeout=120)
    rows = 500
    gates = RolloutGates(min_predictions=12, max_accuracy_drop=0.1, min_labelled=10)

    def build(p):
        stream_rows, _ = stream(p, rows=rows)
        labels = stream_rows | "Labels" >> beam.Map(lambda row: (_row_id(row), TRUTH))
        results, dlq = stream_rows | RunInference(
            handler, watch_model_pattern=str(watched / "*.pkl"), interval=0.1
        ).with_rollout(
            0.5, gates=gates, decide_every=2, labels=JoinLabels(labels, _row_id, 1.0)
        ).with_exception_handling()
        return {"results": results, "inferences": dlq.failed_inferences,
                "loads": dlq.failed_model_loads}

    out = run_pipeline(build, runner="PortableRunner", job_endpoint=prism_endpoint,
                       environment_type="LOOPBACK", streaming=True)
    steps.join(timeout=5)
    results, dead = out["results"], out["inferences"]
    assert abs(len(results) + len(dead) - rows) <= 1, "every row answered or dead-lettered"
    assert not dead, "the wrong model answers fine: only labels show it is wrong"
    assert [(record.stage, record.model_id) for record in out["loads"]] == [("rollout", wrong)]
    message = out["loads"][0].message
    assert "accuracy 0.0000 < stable's 1.0000 - max_accuracy_drop 0.1" in message
    served = {(role_of(r), r.model_id) for r in results}
    assert (CANARY, wrong) in served and (STABLE, wrong) not in served
    assert {(CANARY, right), (STABLE, right)} <= served
