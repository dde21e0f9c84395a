"""Crossing in batches (issue 14 item 4): each input element is a batch of examples, scored
through on_batches(), and each output element a batch of prediction Rows; per-row dead letters
and model ids survive."""

from __future__ import annotations

import apache_beam as beam
import numpy
import pytest

from conftest import csv, load
from liveinference.contract import PredictionResult
from liveinference_expansion import ConfiguredRunInference
from liveinference_expansion.rows import ToPredictionRow, parse_type

PARSE = "liveinference_expansion.functions.parse_csv_floats"


def test_batches_cross_as_one_element_each_with_per_row_dead_letters(run_pipeline, models):
    good = csv(models["x"][:20])
    batches = [good[:8] + ["1,two,3,4"], good[8:] + ["1,2,3"]]
    transform = ConfiguredRunInference(
        "sklearn_numpy", {"model_uri": str(models["v1"])}, preprocess=[PARSE],
        exception_handling=True, crossing_batch=True,
    )
    out = run_pipeline(lambda p: dict(
        zip(("predictions", "dead"), (p | beam.Create(batches) | transform).values())
    ))
    assert sorted(len(batch) for batch in out["predictions"]) == [8, 12]
    rows = [row for batch in out["predictions"] for row in batch]
    expected = dict(zip(map(tuple, models["x"][:20]),
                        load(models["v1"]).predict(models["x"][:20])))
    assert {tuple(row.example): row.inference for row in rows} == {
        key: int(label) for key, label in expected.items()
    }
    assert {row.model_id for row in rows} == {str(models["v1"])}
    dead = {row.element: row for row in out["dead"]}
    assert set(dead) == {"1,two,3,4", "[1.0, 2.0, 3.0]"}
    assert dead["1,two,3,4"].stage == "preprocess[0]"
    assert dead["[1.0, 2.0, 3.0]"].stage == "inference"
    assert str(models["v1"]) in dead["[1.0, 2.0, 3.0]"].error


@pytest.mark.parametrize("arguments, refusal", [
    ({"keyed": True}, "unkeyed examples"),
    ({"postprocess": ["liveinference_expansion.functions.parse_csv_floats"]},
     "runs no postprocess functions"),
])
def test_crossing_batch_refuses_what_it_cannot_carry(models, arguments, refusal):
    with pytest.raises(ValueError, match=refusal):
        ConfiguredRunInference("sklearn_numpy", {"model_uri": str(models["v1"])},
                               crossing_batch=True, **arguments)


@pytest.mark.parametrize("example_type, inference_type, examples, inferences", [
    ("array<double>", "int64", numpy.random.default_rng(0).normal(size=(5, 4)),
     numpy.array([0, 1, 1, 0, 1])),
    # dtypes that do not fit the declared types convert value by value (floats cut to ints)
    ("array<int64>", "double", numpy.random.default_rng(0).normal(size=(5, 4)) * 3,
     numpy.array([0, 1, 1, 0, 1])),
    ("array<double>", "string", [[1.5, 2.0], [3.0, 4.0]], ["a", "b"]),
])
def test_a_batch_converts_to_the_rows_one_by_one_conversion_gives(example_type, inference_type,
                                                                  examples, inferences):
    to_row = ToPredictionRow(parse_type(example_type, "example"),
                             parse_type(inference_type, "inference"), keyed=False)
    one_by_one = [to_row(PredictionResult(example, inference, "m"))
                  for example, inference in zip(examples, inferences)]
    whole = to_row.many(examples, inferences, "m")
    assert whole == one_by_one
    assert [[type(v) for v in row.example] + [type(row.inference)] for row in whole] == [
        [type(v) for v in row.example] + [type(row.inference)] for row in one_by_one]
