"""Model updates as a second input of ConfiguredRunInference, and canary examples given as
input elements: what a Java pipeline's withModelUpdates / withModelValidation send."""

from __future__ import annotations

import apache_beam as beam
import pytest

from conftest import csv
from liveinference_expansion import ConfiguredRunInference
from liveinference_expansion.updates import EXAMPLES, MODEL_UPDATES

PARSE = "liveinference_expansion.functions.parse_csv_floats"


def _transform(models, **kwargs):
    return ConfiguredRunInference(
        "sklearn_numpy", {"model_uri": str(models["v1"])}, preprocess=[PARSE], **kwargs
    )


def test_malformed_updates_are_dead_letters_and_rows_are_still_predicted(run_pipeline, models):
    rows = csv(models["x"][:5])
    Update = beam.Row  # what a Java Row with the fields arrives as
    malformed = ['{"model_name": "no path"}', "{not json", b"   "]
    transform = _transform(models, exception_handling=True)

    def build(p):
        updates = p | "Updates" >> beam.Create(malformed + [Update(model_name="row, no path")])
        out = {EXAMPLES: p | beam.Create(rows), MODEL_UPDATES: updates} | transform
        return {"predictions": out["predictions"], "dead": out["dead_letters"]}

    out = run_pipeline(build)
    assert sorted(tuple(row.example) for row in out["predictions"]) == sorted(
        tuple(row) for row in models["x"][:5]
    )
    dead = {row.element: row for row in out["dead"]}
    assert set(dead) == {'{"model_name": "no path"}', "{not json", "   ",
                         "{'model_name': 'row, no path'}"}
    assert {row.stage for row in dead.values()} == {"model_update"}
    assert all(row.error.endswith(f"(model {models['v1']})") for row in dead.values())
    assert "has no 'model_path' string" in dead['{"model_name": "no path"}'].error
    assert "is not valid JSON" in dead["{not json"].error
    assert "names no model" in dead["   "].error


def test_malformed_update_fails_the_pipeline_without_exception_handling(run_pipeline, models):
    transform = _transform(models)

    def build(p):
        updates = p | "Updates" >> beam.Create(['{"model_name": "no path"}'])
        return {"predictions": {EXAMPLES: p | beam.Create(csv(models["x"][:2])),
                                MODEL_UPDATES: updates} | transform}

    with pytest.raises(Exception, match="has no 'model_path' string"):
        run_pipeline(build)


def test_inputs_with_other_tags_are_refused_naming_the_tags(models):
    transform = _transform(models)
    with beam.Pipeline() as p, pytest.raises(ValueError, match="tagged 'examples' and"):
        _ = {"rows": p | "A" >> beam.Create(["1"]), "x": p | "B" >> beam.Create(["2"])} | transform


def test_canaries_are_preprocessed_like_input_elements(models):
    transform = _transform(models, canary_examples=["1,2,3,4", "0.5,0,0,1"])
    assert [list(canary) for canary in transform._canaries] == [[1, 2, 3, 4], [0.5, 0, 0, 1]]
    keyed = ConfiguredRunInference(
        "sklearn_numpy", {"model_uri": str(models["v1"])}, preprocess=[PARSE], keyed=True,
        canary_examples=[beam.Row(key="a", value="1,2,3,4"), ("b", "0,0,0,0")],
    )
    assert [(key, list(value)) for key, value in keyed._canaries] == [
        ("a", [1, 2, 3, 4]), ("b", [0, 0, 0, 0])
    ]


def test_a_canary_the_preprocessing_refuses_fails_at_construction(models):
    with pytest.raises(ValueError, match=r"canary_examples\[1\] '1,two' failed preprocess\[0\]"):
        _transform(models, canary_examples=["1,2,3,4", "1,two"])
    with pytest.raises(TypeError, match="non-empty list"):
        _transform(models, canary_examples=[])

