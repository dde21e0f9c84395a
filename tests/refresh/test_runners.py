"""The same mid-run swap on every runner we can run: local batch and streaming, and Prism."""

from __future__ import annotations

import pytest

from liveinference import RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.testing import when

from refresh_models import write_model
from streams import paced_stream, run_models

RUNNERS = {
    "local-batch": {},
    "local-streaming": {"streaming": True},
    "prism-batch": {"runner": "PortableRunner", "environment_type": "LOOPBACK"},
    "prism-streaming": {"runner": "PortableRunner", "environment_type": "LOOPBACK", "streaming": True},
}


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_a_model_dropped_mid_run_serves_on_every_runner(
    runner, run_pipeline, model_dir, request, refresh_log
):
    options = dict(RUNNERS[runner])
    if runner.startswith("prism"):
        options["job_endpoint"] = request.getfixturevalue("prism_endpoint")
    watched = model_dir / "watched"
    handler = SklearnModelHandlerNumpy(str(model_dir / "v1.pkl"), max_batch_size=4)
    # Batch runners write results only at the end, so wait for the first model to serve.
    steps = when([(lambda: refresh_log.logged("loaded the first model"),
                   lambda: write_model(str(watched / "v2.pkl"), 2))], timeout=120)

    def build(p):
        rows = paced_stream(p, rows=60, rate=0.1)
        results, dlq = rows | RunInference(
            handler, watch_model_pattern=str(watched / "*.pkl"), interval=0.3
        ).with_exception_handling()
        return {"results": results, "failed": dlq.failed_inferences}

    out = run_pipeline(build, **options)
    steps.join(timeout=5)
    assert len(out["results"]) + len(out["failed"]) == 60
    assert out["failed"] == []
    assert run_models(out["results"]) == [1, 2]
