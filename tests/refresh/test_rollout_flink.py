"""The shared rollout decision on Beam's Flink runner (the job server, Flink in local mode).

The same run as `test_rollout_streaming`'s shared decision on the local runner and Prism:
a canary that fails every prediction is rolled back by the one decision the combine of every
worker's statistics makes, then a good one is promoted; no row is lost, and every output's
model_id and role agree with the decision. Streaming, LOOPBACK workers (they run in this
process, so the test waits on their log lines). `make flink-jobserver` builds the job server.
"""

from __future__ import annotations

import os
import pickle
from typing import Iterator

import pytest
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.rollout.roles import CANARY, STABLE, role_of
from liveinference.testing import when

from examples import xlang_runtime
from refresh_models import write_model
from rollout_scenario import Broken, shared_decision_rollout
from streams import by_time

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flink_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Beam's Flink job server in local mode for this module; its job endpoint."""
    missing = xlang_runtime.missing_pieces("flink")
    if missing:
        if os.environ.get("LIVEINFERENCE_REQUIRE_XLANG") == "1":
            pytest.fail("missing " + "; ".join(missing))
        pytest.skip(reason="missing " + "; ".join(missing))
    with xlang_runtime.start_flink(tmp_path_factory.mktemp("flink")) as running:
        yield running.address


def test_on_flink_one_decision_rolls_back_a_failing_canary_then_promotes_a_good_one(
    flink_endpoint, run_pipeline, model_dir, refresh_log
):
    watched = model_dir / "watched"
    v1, bad, good = str(model_dir / "v1.pkl"), str(watched / "v2.pkl"), str(watched / "v3.pkl")
    handler = SklearnModelHandlerNumpy(v1, max_batch_size=4)
    steps = when([
        (lambda: refresh_log.logged("loaded the first model"),
         lambda: (watched / "v2.pkl").write_bytes(pickle.dumps(Broken()))),
        (lambda: refresh_log.logged("rollback model", bad, "every worker"), lambda: write_model(good, 3)),
        (lambda: refresh_log.logged("promote model", good, "every worker"), lambda: "done"),
    ], timeout=150)
    rows = 800

    def build(p):
        return shared_decision_rollout(p, handler, str(watched / "*.pkl"), rows)

    out = run_pipeline(
        build, runner="PortableRunner", job_endpoint=flink_endpoint,
        environment_type="LOOPBACK", streaming=True,
    )
    steps.join(timeout=5)
    results, dead = out["results"], out["inferences"]
    assert abs(len(results) + len(dead) - rows) <= 1, "every row answered or dead-lettered"
    assert [(record.stage, record.model_id) for record in out["loads"]] == [("rollout", bad)]
    assert "errors" in out["loads"][0].message
    assert dead and {record.model_id for record in dead} == {bad}
    served = [(role_of(r), r.model_id) for r in by_time(results)]
    assert set(served) == {(STABLE, v1), (CANARY, good), (STABLE, good)}, set(served)
    assert all(role == STABLE for role, _ in served[:served.index((CANARY, good))])
