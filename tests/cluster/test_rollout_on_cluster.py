"""The shared rollout decision on a real Flink session cluster: both TaskManagers follow it.

A streaming pipeline (parallelism 2, PROCESS workers beside each TaskManager) serves v1 with
`with_rollout(0.5, decide_every=2)`; models and the run's channels are on the S3-compatible
store (moto's server). A canary that loads fine and fails every prediction is offered once
both TaskManagers predict; the combine over every worker's statistics rolls it back once,
for all; then a good one is offered and promoted on both. Each step waits on what the workers
wrote, never on the clock; the run is cut off and every row up to the cut-off must come out,
predicted or dead-lettered.

The workers unpickle this module's record function: the pipeline uses cloudpickle with this
module registered to be pickled by value (the workers cannot import a test module).
"""

from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set, Tuple

import apache_beam as beam
import cloudpickle
import numpy
import pytest

from cluster import flink
from cluster.analysis import row_counts
from cluster.models import constant_classifier
from cluster.objectstore import ObjectStore
from cluster.observe import Observe, WriteRecords, read_records, where
from cluster.pipelines import StreamSpec, cluster_options, stream_rows
from cluster.places import S3Place
from cluster.scenarios import wait_for
from liveinference import RunInference
from liveinference.rollout.policy import RolloutGates
from liveinference.rollout.roles import CANARY, STABLE, role_of
from liveinference.sklearn_inference import SklearnModelHandlerNumpy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def object_store() -> Iterator[ObjectStore]:
    """moto's S3 server for this module's run."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed; `make venv`")
    with ObjectStore() as store:
        yield store


@pytest.fixture
def pickled_by_value() -> Iterator[None]:
    """Has cloudpickle pickle this module's functions by value while a test runs."""
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    yield
    cloudpickle.unregister_pickle_by_value(module)


def broken_classifier() -> Any:
    """A fitted scikit-learn model that loads fine and fails on every 4-feature row."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(numpy.eye(3), [0, 1, 1])


def prediction_record(result: Any) -> Dict[str, Any]:
    """A prediction as a plain record with its role and the worker that made it."""
    return {"example": result.example.tolist(), "inference": int(result.inference),
            "model_id": result.model_id, "role": role_of(result), **where(),
            "time": time.time()}


def build(pipeline: beam.Pipeline, spec: StreamSpec, place: S3Place, out: Path) -> None:
    """Rows -> Reshuffle -> RunInference with a shared rollout decision -> records."""
    rows = stream_rows(pipeline, spec)
    handler = SklearnModelHandlerNumpy(place.uri("v1.pkl"), max_batch_size=4)
    results, dead = rows | RunInference(
        handler, watch_model_pattern=place.pattern, interval=0.5, refresh_channel=place.channel
    ).with_rollout(
        0.5, gates=RolloutGates(min_predictions=12), decide_every=2
    ).with_exception_handling()
    _ = (results | "Records" >> beam.Map(prediction_record)
         | "Write predictions" >> WriteRecords(str(out / "predictions")))
    for name, pcoll in (("failed_inferences", dead.failed_inferences),
                        ("failed_model_loads", dead.failed_model_loads)):
        _ = (pcoll | f"Observe {name}" >> beam.ParDo(Observe())
             | f"Write {name}" >> WriteRecords(str(out / name)))


def serving_on(out: Path, model_id: str, role: str) -> Set[str]:
    """The TaskManagers whose workers have predicted with `model_id` in `role`."""
    return {r["taskmanager"] for r in read_records(str(out / "predictions"))
            if r["model_id"] == model_id and r["role"] == role}


def up_to(out: Path, rows_in: int) -> Tuple[List[dict], List[dict]]:
    """The prediction and inference dead-letter records of rows 0 .. rows_in - 1."""
    predictions = [r for r in read_records(str(out / "predictions"))
                   if int(r["example"][0]) < rows_in]
    dead = [r for r in read_records(str(out / "failed_inferences"))
            if int(r["element"][0]) < rows_in]
    return predictions, dead


def roles_by_worker(out: Path) -> Dict[Tuple[str, int], List[Tuple[str, str]]]:
    """Each worker's runs of (role, model_id), in the order it made its predictions."""
    runs: Dict[Tuple[str, int], List[Tuple[str, str]]] = {}
    for r in sorted(read_records(str(out / "predictions")), key=lambda r: r["time"]):
        served = runs.setdefault((r["taskmanager"], r["pid"]), [])
        if not served or served[-1] != (r["role"], r["model_id"]):
            served.append((r["role"], r["model_id"]))
    return runs


def test_both_taskmanagers_follow_one_decision_rollback_then_promote(
    flink_cluster, object_store, tmp_path, pickled_by_value
):
    place = S3Place(object_store, "rollout-run")
    out = tmp_path / "out"
    v1 = place.write("v1.pkl", pickle.dumps(constant_classifier(1)))
    bad, good = place.uri("watched/v2.pkl"), place.uri("watched/v3.pkl")
    taskmanagers = {record.role for record in flink_cluster.taskmanagers()}
    spec = StreamSpec(start=time.time() + 2, interval=0.05, rows=int(3600 / 0.05))
    flags = [*place.flags(), "--pickle_library=cloudpickle"]
    pipeline = beam.Pipeline(options=cluster_options(flink_cluster, 2, flags))
    build(pipeline, spec, place, out)
    jobs_before = flink.job_ids(flink_cluster.rest_port)
    result = pipeline.run()
    try:
        wait_for(lambda: serving_on(out, v1, STABLE) == taskmanagers, 300,
                 f"workers on {sorted(taskmanagers)} serving v1")
        place.write("watched/v2.pkl", pickle.dumps(broken_classifier()))
        wait_for(lambda: read_records(str(out / "failed_model_loads")), 120,
                 "the shared decision rolling v2 back")
        place.write("watched/v3.pkl", pickle.dumps(constant_classifier(3)))
        wait_for(lambda: serving_on(out, good, STABLE) == taskmanagers, 120,
                 f"workers on {sorted(taskmanagers)} serving v3 once promoted")
        rows_in = spec.rows_until(time.time())
        wait_for(lambda: row_counts(rows_in, *up_to(out, rows_in))["lost"] == 0, 120,
                 f"all {rows_in} rows up to the cut-off")
    finally:
        flink.cancel_jobs(flink_cluster.rest_port,
                          flink.job_ids(flink_cluster.rest_port) - jobs_before)
        result.cancel()

    predictions, dead = up_to(out, rows_in)
    counts = row_counts(rows_in, predictions, dead)
    assert counts["lost"] == 0 and counts["duplicates"] == 0, counts
    loads = read_records(str(out / "failed_model_loads"))
    assert [(r["stage"], r["model_id"]) for r in loads] == [("rollout", bad)], \
        "one rollback, decided once for every worker"
    assert dead and {r["model_id"] for r in dead} == {bad}
    served = {(r["role"], r["model_id"]) for r in read_records(str(out / "predictions"))}
    assert served == {(STABLE, v1), (CANARY, good), (STABLE, good)}, served
    assert serving_on(out, good, CANARY) == taskmanagers, "both served the canary share"
    for worker, runs in roles_by_worker(out).items():
        promoted = runs.index((STABLE, good))
        assert set(runs[:promoted]) <= {(STABLE, v1), (CANARY, good)}, (worker, runs)
        assert runs[promoted:] == [(STABLE, good)], f"{worker} went back after the promotion"
    decisions = [key for key in place.keys("channel") if "rollout" in key]
    assert len(decisions) >= 2, f"a rollback and a promotion on the S3 channel: {decisions}"
