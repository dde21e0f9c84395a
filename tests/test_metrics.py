"""Beam metrics reported by RunInference, read back from the pipeline result."""

from __future__ import annotations

import apache_beam as beam
import numpy
from apache_beam.metrics.metric import MetricsFilter

from liveinference import RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy


def _metrics(result, namespace):
    query = result.metrics().query(MetricsFilter().with_namespace(namespace))
    counters = {c.key.metric.name: c.committed for c in query["counters"]}
    distributions = {d.key.metric.name: d.committed for d in query["distributions"]}
    return counters, distributions


def test_inference_and_load_metrics_are_reported(run_pipeline, sklearn_model_path):
    rows = [numpy.zeros(4)] * 20 + [numpy.zeros(3)] * 2
    handler = SklearnModelHandlerNumpy(sklearn_model_path, min_batch_size=11, max_batch_size=11)

    def build(p):
        results, _ = p | beam.Create(rows, reshuffle=False) | RunInference(handler).with_exception_handling()
        return {"results": results}

    run_pipeline(build)
    counters, distributions = _metrics(run_pipeline.result, "BeamML_Sklearn")
    assert counters["num_inferences"] == 20
    assert counters["failed_batches_counter"] == 1
    assert distributions["inference_request_batch_size"].count == 2
    assert distributions["inference_request_batch_size"].max == 11
    assert distributions["inference_batch_latency_micro_secs"].count == 2
    assert distributions["inference_request_batch_byte_size"].sum > 0
    assert distributions["load_model_latency_milli_secs"].count == 1
    assert distributions["model_byte_size"].count == 1


def test_metrics_namespace_argument_overrides_the_handler_namespace(run_pipeline, sklearn_model_path):
    handler = SklearnModelHandlerNumpy(sklearn_model_path)
    run_pipeline(
        lambda p: {"r": p | beam.Create([numpy.zeros(4)] * 3) | RunInference(handler, metrics_namespace="fraud")}
    )
    counters, _ = _metrics(run_pipeline.result, "fraud")
    assert counters["num_inferences"] == 3
    assert _metrics(run_pipeline.result, "BeamML_Sklearn") == ({}, {})


class _SelfReportingHandler(SklearnModelHandlerNumpy):
    def override_metrics(self, metrics_namespace=""):
        return True


def test_a_handler_that_overrides_metrics_gets_none_from_runinference(run_pipeline, sklearn_model_path):
    run_pipeline(
        lambda p: {"r": p | beam.Create([numpy.zeros(4)]) | RunInference(_SelfReportingHandler(sklearn_model_path))}
    )
    assert _metrics(run_pipeline.result, "BeamML_Sklearn") == ({}, {})
