"""Dead letters: every input is predicted or dead-lettered, and bad rows do not sink batches."""

from __future__ import annotations

import math

import apache_beam as beam
import numpy
import pytest

from liveinference import FailureRecord, InvalidExampleError, ModelLoadError, RunInference
from liveinference.deadletter import isolate_failures
from liveinference.errors import mark_whole_batch_failure
from liveinference.dofn import crash_model_id
from liveinference.refresh.config import RefreshConfig
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.testing import FaultOnMark

SLOW_MARK = 777.0
UNPRINTABLE = 99.0


def parse(line: str) -> numpy.ndarray:
    return numpy.array([float(field) for field in line.split(",")])


def describe(result) -> str:
    if result.example[3] == UNPRINTABLE:
        raise ValueError(f"cannot describe example with marker {UNPRINTABLE}")
    return f"{list(result.example)} -> {result.inference}"


def _rows(dataset, count: int) -> list:
    x, _ = dataset
    return [",".join(str(value) for value in row) for row in x[:count]]


def test_every_input_is_predicted_or_dead_lettered_at_its_stage(run_pipeline, sklearn_model_path, dataset):
    good = _rows(dataset, 40)
    bad_parse = ["x,1,2,3", "1,2,3,oops"]
    bad_inference = ["nan,1,2,3", "1,nan,2,3", "1,2,3"]
    bad_postprocess = ["0.5,0.5,0.5,99.0"]
    inputs = good + bad_parse + bad_inference + bad_postprocess
    handler = (
        SklearnModelHandlerNumpy(sklearn_model_path, min_batch_size=8, max_batch_size=8)
        .with_preprocess_fn(parse)
        .with_postprocess_fn(describe)
    )

    def build(p):
        results, dlq = p | beam.Create(inputs) | RunInference(handler).with_exception_handling()
        return {
            "results": results,
            "preprocess": dlq.failed_preprocessing[0],
            "inference": dlq.failed_inferences,
            "postprocess": dlq.failed_postprocessing[0],
        }

    out = run_pipeline(build)
    dead = len(out["preprocess"]) + len(out["inference"]) + len(out["postprocess"])
    assert len(inputs) == len(out["results"]) + dead
    assert len(out["results"]) == len(good)
    assert {record.element for record in out["preprocess"]} == set(bad_parse)
    assert all(record.stage == "preprocess[0]" for record in out["preprocess"])
    assert all(record.exception_type == "builtins.ValueError" for record in out["preprocess"])
    assert sorted(len(record.element) for record in out["inference"]) == [3, 4, 4]
    assert all(record.stage == "inference" for record in out["inference"])
    assert any("NaN" in record.message for record in out["inference"])
    assert any("expects examples of shape (4,)" in record.message for record in out["inference"])
    [post] = out["postprocess"]
    assert post.stage == "postprocess[0]" and "marker 99.0" in post.message
    assert post.element.example[3] == UNPRINTABLE
    predicted = {line.split(" -> ")[0] for line in out["results"]}
    assert predicted == {str(list(parse(line))) for line in good}


def test_without_exception_handling_a_bad_row_fails_the_pipeline(run_pipeline, sklearn_model_path):
    handler = SklearnModelHandlerNumpy(sklearn_model_path)
    with pytest.raises(InvalidExampleError, match="expects examples of shape"):
        run_pipeline(lambda p: {"r": p | beam.Create([numpy.zeros(3)]) | RunInference(handler)})


def test_a_model_that_fails_to_load_dead_letters_its_batches(run_pipeline, tmp_path):
    handler = SklearnModelHandlerNumpy(str(tmp_path / "missing.pkl"))
    rows = [numpy.zeros(4) for _ in range(5)]

    def build(p):
        results, dlq = p | beam.Create(rows) | RunInference(handler).with_exception_handling()
        return {"results": results, "inference": dlq.failed_inferences}

    out = run_pipeline(build)
    assert out["results"] == []
    assert len(out["inference"]) == 5
    assert {record.stage for record in out["inference"]} == {"load_model"}
    assert all("missing.pkl" in record.message for record in out["inference"])
    assert {r.exception_type for r in out["inference"]} == {"liveinference.errors.ModelLoadError"}


def test_a_model_that_fails_to_load_without_handling_fails_at_start(run_pipeline, tmp_path):
    handler = SklearnModelHandlerNumpy(str(tmp_path / "missing.pkl"))
    with pytest.raises(ModelLoadError, match="missing.pkl"):
        run_pipeline(lambda p: {"r": p | beam.Create([numpy.zeros(4)]) | RunInference(handler)})


def test_timeout_dead_letters_the_slow_batch_and_keeps_the_rest(run_pipeline, sklearn_model_path):
    sklearn = SklearnModelHandlerNumpy(sklearn_model_path, min_batch_size=2, max_batch_size=2)
    handler = FaultOnMark(sklearn, SLOW_MARK, "slow", seconds=3)
    rows = [numpy.full(4, SLOW_MARK), numpy.zeros(4)] + [numpy.ones(4) * i for i in range(1, 7)]

    def build(p):
        results, dlq = (
            p | beam.Create(rows, reshuffle=False)
            | RunInference(handler).with_exception_handling(timeout=1)
        )
        return {"results": results, "inference": dlq.failed_inferences}

    out = run_pipeline(build)
    assert len(out["results"]) + len(out["inference"]) == len(rows)
    assert 1 <= len(out["inference"]) <= 2
    assert any(record.element[0] == SLOW_MARK for record in out["inference"])
    assert all(record.exception_type == "builtins.TimeoutError" for record in out["inference"])
    assert all("timeout of 1s" in record.message for record in out["inference"])


def test_threshold_fails_the_pipeline_when_too_many_rows_are_bad(run_pipeline, sklearn_model_path):
    handler = SklearnModelHandlerNumpy(sklearn_model_path)
    rows = [numpy.zeros(4), numpy.zeros(3), numpy.zeros(3), numpy.zeros(4)]

    def build(p):
        results, dlq = p | beam.Create(rows) | RunInference(handler).with_exception_handling(threshold=0.25)
        return {"results": results}

    with pytest.raises(ValueError, match="over the threshold of 25%"):
        run_pipeline(build)


def test_isolation_finds_the_bad_row_in_logarithmic_calls():
    calls = []
    bad = 37

    def run(part):
        calls.append(len(part))
        if bad in part:
            raise ValueError("bad row")
        return [value * 2 for value in part]

    batch = list(range(64))
    results, failures = isolate_failures(run, batch, ValueError("bad row"), ValueError)
    assert results == [value * 2 for value in batch if value != bad]
    assert [element for element, _ in failures] == [bad]
    assert len(calls) <= 2 * math.log2(len(batch))


def test_whole_batch_failures_are_not_split():
    calls = []
    down = mark_whole_batch_failure(ConnectionError("server down"))

    def run(part):
        calls.append(list(part))
        if 3 in part:
            raise mark_whole_batch_failure(ConnectionError("server down"))
        raise ValueError("bad row")

    results, failures = isolate_failures(run, list(range(8)), down, Exception)
    assert (results, [element for element, _ in failures], calls) == ([], list(range(8)), [])
    results, failures = isolate_failures(run, list(range(8)), ValueError("bad row"), Exception)
    assert [element for element, _ in failures] == list(range(8))
    assert [len(call) for call in calls] == [4, 4, 2, 1, 1, 2, 1, 1]
    assert all(isinstance(error, ConnectionError) for _, error in failures[:4])


def test_isolation_lets_uncaught_exception_types_through():
    def run(part):
        raise KeyError("not caught")

    with pytest.raises(KeyError):
        isolate_failures(run, [1, 2], ValueError("first"), ValueError)


def test_failure_record_names_type_message_and_stage():
    record = FailureRecord.of({"x": 1}, "inference", ModelLoadError("no such file"), "m1")
    assert record == FailureRecord(
        {"x": 1}, "inference", "liveinference.errors.ModelLoadError", "no such file", "m1"
    )


def test_crash_records_of_a_refreshing_step_say_the_model_is_unknown_and_name_the_first():
    handler = SklearnModelHandlerNumpy("/models/first.pkl")
    assert crash_model_id(handler, RefreshConfig()) == "/models/first.pkl"
    refreshing = crash_model_id(handler, RefreshConfig(watch_pattern="/models/*.pkl"))
    assert refreshing.startswith("unknown") and "/models/first.pkl" in refreshing


def test_with_exception_handling_checks_its_arguments(sklearn_model_path):
    transform = RunInference(SklearnModelHandlerNumpy(sklearn_model_path))
    with pytest.raises(ValueError, match="threshold must be .*between 0 and 1"):
        transform.with_exception_handling(threshold=2)
    with pytest.raises(ValueError, match="timeout must be .*positive"):
        transform.with_exception_handling(timeout=0)


CRASH_MARK = 666.0


def test_use_subprocess_survives_a_crashing_model(run_pipeline, sklearn_model_path):
    sklearn = SklearnModelHandlerNumpy(sklearn_model_path, min_batch_size=4, max_batch_size=4)
    handler = FaultOnMark(sklearn, CRASH_MARK, "crash")
    rows = [numpy.zeros(4)] * 5 + [numpy.full(4, CRASH_MARK)] + [numpy.ones(4)] * 5 + [numpy.zeros(3)]

    def build(p):
        results, dlq = (
            p | beam.Create(rows, reshuffle=False)
            | RunInference(handler).with_exception_handling(use_subprocess=True)
        )
        return {"results": results, "inference": dlq.failed_inferences}

    out = run_pipeline(build)
    assert len(out["results"]) + len(out["inference"]) == len(rows)
    crashed = [r for r in out["inference"] if "subprocess died" in r.message]
    assert len(crashed) == 4
    assert any(record.element[0] == CRASH_MARK for record in crashed)
    # The parent never held the model; without refresh it is the handler's own.
    assert {record.model_id for record in crashed} == {sklearn_model_path}
    assert all(record[0][0] is record.element and record[1][0] is not None for record in crashed)
    [wrong_width] = [r for r in out["inference"] if "subprocess" not in r.message]
    assert wrong_width.exception_type == "liveinference.errors.InvalidExampleError"
