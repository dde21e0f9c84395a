"""A bounded model_metadata_pcoll serves each element with the version in effect at its event
time (issue 12 item 2), on every runner we run; a version that fails to load is reported and
its period is served by the latest good version before it."""

from __future__ import annotations

import json
import random

import apache_beam as beam
import numpy
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.transforms.window import TimestampedValue

from liveinference import (
    KeyedModelHandler,
    KeyModelMapping,
    KeyModelPathMapping,
    ModelMetadata,
    RunInference,
)
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.refresh.event_versions import Routed, Timeline, VersionChain, by_version

from refresh_models import write_model

RUNNERS = {
    "local-batch": {},
    # Prism refuses the side-input state requests of a LOOPBACK worker (Beam's interceptor
    # sends an empty worker id there); the service's boot program sets it.
    "prism-batch-process": {"runner": "PortableRunner", "environment_type": "PROCESS"},
}
# Event times of the versions, and of the elements: before, at and between them.
V2_AT, BAD_AT, V3_AT = 100, 200, 300
ELEMENT_TIMES = [10, 99, 100, 150, 199, 200, 250, 299, 300, 350, 1000]


def _versions(model_dir):
    v2 = write_model(str(model_dir / "v2.pkl"), 2)
    v3 = write_model(str(model_dir / "v3.pkl"), 3)
    bad = model_dir / "bad.pkl"
    bad.write_bytes(b"not a pickle")
    return [(ModelMetadata(v2, "v2"), V2_AT), (ModelMetadata(str(bad), "bad"), BAD_AT),
            (ModelMetadata(v3, "v3"), V3_AT)]


def _timestamped(pipeline, label, values):
    """`(value, event time)` pairs as a timestamped PCollection (nothing pickled from here,
    so a worker started by the runner can run it)."""
    return (
        pipeline
        | f"{label}Create" >> beam.Create(values)
        | f"{label}Stamp" >> beam.MapTuple(TimestampedValue)
    )


def _process_environment(request, tmp_path):
    boot = pytest.importorskip("liveinference_expansion.boot", reason="no expansion package")
    folder = tmp_path / "boot"
    folder.mkdir(mode=0o700)
    command = boot.write_boot_command(str(folder), tmpdir=str(tmp_path), log_dir=str(folder))
    return {"job_endpoint": request.getfixturevalue("prism_endpoint"),
            "environment_config": json.dumps({"command": command})}


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_each_element_is_served_by_the_version_in_effect_at_its_event_time(
    runner, run_pipeline, model_dir, request, tmp_path
):
    options = dict(RUNNERS[runner])
    if runner.startswith("prism"):
        options.update(_process_environment(request, tmp_path))
    versions = _versions(model_dir)
    v1, v2, v3, bad = (str(model_dir / name) for name in ("v1.pkl", "v2.pkl", "v3.pkl", "bad.pkl"))
    rows = [
        (numpy.array([float(t), float(copy), 0.0, 0.0]), t)
        for t in ELEMENT_TIMES
        for copy in range(3)
    ]
    random.Random(0).shuffle(rows)  # batches of 4 then hold elements of several versions

    def build(p):
        examples = _timestamped(p, "Rows", rows)
        results, dlq = examples | RunInference(
            SklearnModelHandlerNumpy(v1, max_batch_size=4),
            model_metadata_pcoll=_timestamped(p, "Versions", versions),
        ).with_exception_handling()
        return {
            "results": results, "loads": dlq.failed_model_loads, "failed": dlq.failed_inferences
        }

    out = run_pipeline(build, **options)
    # The bad version's period (200 to 299) is served by v2, the latest good one before it.
    expected = {
        t: (v1, 1) if t < V2_AT else (v2, 2) if t < V3_AT else (v3, 3) for t in ELEMENT_TIMES
    }
    served = sorted((int(r.example[0]), r.model_id, int(r.inference)) for r in out["results"])
    assert served == sorted((t, *expected[t]) for _, t in rows)
    assert out["failed"] == []
    assert out["loads"], "the version that failed to load is reported"
    assert {(record.model_id, record.stage) for record in out["loads"]} == {(bad, "load_model")}


def _routes_by_event_time(metadata, streaming=False, **kwargs):
    p = beam.Pipeline(options=PipelineOptions(streaming=streaming))
    rows = p | "Rows" >> beam.Create([numpy.zeros(4)])
    rollout = kwargs.pop("rollout", False)
    transform = RunInference(
        SklearnModelHandlerNumpy("/m/v1.pkl"), model_metadata_pcoll=metadata(p), **kwargs
    )
    _ = rows | (transform.with_rollout() if rollout else transform)
    labels = [node.full_label for node in p.transforms_stack[0].parts[-1].parts]
    return any(label.endswith("RouteByEventTime") for label in labels)


def test_only_a_bounded_model_metadata_pcoll_in_a_batch_pipeline_routes_by_event_time():
    version = ModelMetadata("/m/v2.pkl", "v2")
    bounded = lambda p: p | "Versions" >> beam.Create([version])  # noqa: E731
    unbounded = lambda p: (  # noqa: E731
        p | PeriodicImpulse(fire_interval=1) | beam.Map(lambda _: ModelMetadata("/m/v2.pkl", "v2"))
    )
    assert _routes_by_event_time(bounded)
    assert not _routes_by_event_time(unbounded)
    assert not _routes_by_event_time(bounded, streaming=True), "streaming swaps by processing time"
    with pytest.raises(ValueError, match="pass one of them"):
        _routes_by_event_time(bounded, watch_model_pattern="/m/*.pkl")
    with pytest.raises(ValueError, match="drop with_rollout"):
        _routes_by_event_time(bounded, rollout=True)


def test_per_key_versions_build_on_the_ones_before(run_pipeline, model_dir):
    a2 = write_model(str(model_dir / "a2.pkl"), 20)
    b2 = write_model(str(model_dir / "b2.pkl"), 21)
    a1 = write_model(str(model_dir / "a1.pkl"), 10)
    b1 = write_model(str(model_dir / "b1.pkl"), 11)
    handler = KeyedModelHandler([
        KeyModelMapping(["a"], SklearnModelHandlerNumpy(a1)),
        KeyModelMapping(["b"], SklearnModelHandlerNumpy(b1)),
    ])
    versions = [([KeyModelPathMapping(["a"], a2, "a-v2")], 100),
                ([KeyModelPathMapping(["b"], b2, "b-v2")], 200)]
    rows = [
        ((key, numpy.array([float(t), 0.0, 0.0, 0.0])), t) for t in (50, 150, 250) for key in "ab"
    ]

    def build(p):
        return {"results": _timestamped(p, "Rows", rows) | RunInference(
            handler, model_metadata_pcoll=_timestamped(p, "Versions", versions)
        )}

    results = run_pipeline(build)["results"]
    served = sorted((key, int(r.example[0]), int(r.inference)) for key, r in results)
    assert served == [("a", 50, 10), ("a", 150, 20), ("a", 250, 20),
                      ("b", 50, 11), ("b", 150, 11), ("b", 250, 21)]


def test_the_timeline_picks_the_latest_version_at_or_before_and_refuses_ties():
    v2, v3 = ModelMetadata("/m/v2.pkl", "v2"), ModelMetadata("/m/v3.pkl", "v3")
    timeline = Timeline([(300, v3), (100, v2), (100, v2)])  # a repeated version counts once
    assert timeline.chain_at(99) == VersionChain()
    assert [v.offer for v in timeline.chain_at(100).versions] == [v2]
    assert [v.offer for v in timeline.chain_at(10**9).versions] == [v2, v3]
    with pytest.raises(ValueError, match="share the event timestamp"):
        Timeline([(100, v2), (100, v3)])


def test_a_batch_is_split_by_version_keeping_order():
    first, second = Timeline([(1, ModelMetadata("/m/a", "a"))]).chain_at(5), VersionChain()
    batch = [Routed(first, 1), Routed(second, 2), Routed(first, 3)]
    assert by_version(batch) == [(first, [1, 3]), (second, [2])]
    assert by_version(Routed(first, [7, 8])) == [(first, [7, 8])]


def test_a_crashed_batch_names_each_elements_version():
    from liveinference.event_time import crashed_elements

    chain = Timeline([(1, ModelMetadata("/m/v2.pkl", "v2"))]).chain_at(5)
    batch = [Routed(chain, "late"), Routed(VersionChain(), "early")]
    assert crashed_elements(batch, "/m/v1.pkl") == [("late", "/m/v2.pkl"), ("early", "/m/v1.pkl")]
    assert crashed_elements(["plain"], "/m/v1.pkl") == [("plain", "/m/v1.pkl")]
