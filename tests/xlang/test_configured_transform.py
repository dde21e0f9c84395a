"""Python users call the same configured transform the service exposes, and get the same
behaviour: typed Rows, dead letters from every stage, checks at construction."""

from __future__ import annotations

import apache_beam as beam
import joblib
import pytest

from conftest import csv, load
from liveinference import RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference_expansion import ConfiguredRunInference, Policy, serving_policy
from liveinference_expansion.functions import parse_csv_floats

PARSE = "liveinference_expansion.functions.parse_csv_floats"
HELPERS = Policy(allowed_modules=("liveinference_expansion.functions", "xlang_helpers"))


def test_predictions_and_dead_letters_match_liveinference_run_inference(run_pipeline, models):
    good = csv(models["x"][:30])
    bad = ["1,two,3,4", "1,2,3"]
    transform = ConfiguredRunInference(
        "sklearn_numpy", {"model_uri": str(models["v1"]), "max_batch_size": 8},
        preprocess=[PARSE], exception_handling=True,
    )
    direct = SklearnModelHandlerNumpy(str(models["v1"]), max_batch_size=8).with_preprocess_fn(
        parse_csv_floats
    )

    def build(p):
        lines = p | beam.Create(good + bad)
        out = lines | transform
        return {
            "predictions": out["predictions"],
            "dead": out["dead_letters"],
            "direct": (lines | RunInference(direct).with_exception_handling())[0],
        }

    out = run_pipeline(build)
    expected = load(models["v1"]).predict(models["x"][:30])
    by_example = {tuple(row.example): row for row in out["predictions"]}
    assert len(by_example) == len(good)
    for features, label in zip(models["x"][:30], expected):
        row = by_example[tuple(features)]
        assert row.inference == int(label) and isinstance(row.inference, int)
        assert row.model_id == str(models["v1"])
    direct_results = {tuple(r.example): int(r.inference) for r in out["direct"]}
    assert direct_results == {key: row.inference for key, row in by_example.items()}
    dead = {row.element: row for row in out["dead"]}
    assert set(dead) == {"1,two,3,4", "[1.0, 2.0, 3.0]"}
    assert dead["1,two,3,4"].stage == "preprocess[0]"
    assert "column 1 of '1,two,3,4' is 'two', not a number" in dead["1,two,3,4"].error
    assert dead["[1.0, 2.0, 3.0]"].stage == "inference"
    assert "expects examples of shape (4,)" in dead["[1.0, 2.0, 3.0]"].error


def test_keyed_input_keeps_keys_and_applies_functions_to_values(run_pipeline, models):
    rows = csv(models["x"][:6])
    with serving_policy(HELPERS):
        transform = ConfiguredRunInference(
            "sklearn_numpy", {"model_uri": str(models["v1"])}, keyed=True, key_type="string",
            preprocess=[PARSE], postprocess=["xlang_helpers.label_name"],
            inference_type="string",
        )
    out = run_pipeline(lambda p: {"r": p | beam.Create(list(zip("abcdef", rows))) | transform})
    expected = load(models["v1"]).predict(models["x"][:6])
    assert sorted(key for key, _ in out["r"]) == list("abcdef")
    for key, row in out["r"]:
        index = "abcdef".index(key)
        assert row.inference == ("positive" if expected[index] == 1 else "negative")
        assert row.example == pytest.approx(list(models["x"][index]))


def test_a_postprocess_result_that_does_not_fit_the_row_is_dead_lettered(run_pipeline, models):
    with serving_policy(HELPERS):
        transform = ConfiguredRunInference(
            "sklearn_numpy", {"model_uri": str(models["v1"])}, preprocess=[PARSE],
            postprocess=["xlang_helpers.not_a_prediction"], exception_handling=True,
        )
    out = run_pipeline(lambda p: (p | beam.Create(csv(models["x"][:3])) | transform))
    assert out["predictions"] == []
    assert len(out["dead_letters"]) == 3
    assert {row.stage for row in out["dead_letters"]} == {"postprocess[1]"}
    assert all("must reach the output as a PredictionResult" in row.error
               for row in out["dead_letters"])


def test_enum_arguments_are_given_by_member_name(run_pipeline, models, tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump(load(models["v1"]), path)
    transform = ConfiguredRunInference(
        "sklearn_numpy", {"model_uri": str(path), "model_file_type": "JOBLIB"},
        preprocess=[PARSE],
    )
    out = run_pipeline(lambda p: {"r": p | beam.Create(csv(models["x"][:4])) | transform})
    assert sorted(row.inference for row in out["r"]) == sorted(
        int(v) for v in load(models["v1"]).predict(models["x"][:4])
    )


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"handler": "xgboost_magic"}, ValueError, "unknown handler 'xgboost_magic'"),
        ({"handler_args": {"model_path": "x"}}, TypeError, "has no argument(s) ['model_path']"),
        ({"handler_args": {}}, TypeError, "needs argument(s) ['model_uri']"),
        ({"handler_args": {"model_uri": "MODEL", "model_file_type": "ZIP"}}, TypeError,
         "must be one of ['PICKLE', 'JOBLIB']"),
        ({"handler_args": {"model_uri": "MODEL", "large_model": 1}}, TypeError,
         "'large_model' must be a boolean, got int 1"),
        ({"preprocess": ["subprocess.run"]}, PermissionError,
         "preprocess[0] 'subprocess.run' is not in an allowed module"),
        ({"preprocess": ["liveinference_expansion.functions.nope"]}, ValueError,
         "has no callable 'nope'"),
        ({"postprocess": ["lambda r: r"]}, PermissionError, "inline Python source"),
        ({"preprocess": [3]}, TypeError, "list of qualified function names"),
        ({"interval": 5}, ValueError, "interval=5 was given without watch_model_pattern"),
        ({"watch_model_pattern": "/m/*.pkl", "interval": 0}, ValueError,
         "interval must be a positive number"),
        ({"watch_model_pattern": "/m/*.pkl", "interval": "5"}, TypeError,
         "interval must be a number of seconds, got str"),
        ({"example_type": "array<date>"}, ValueError, "example_type 'array<date>' is not"),
        ({"keyed": "true"}, TypeError, "keyed must be a boolean"),
    ],
)
def test_bad_configurations_fail_at_construction_naming_the_argument(models, kwargs, error,
                                                                     message):
    config = {"handler": "sklearn_numpy", "handler_args": {"model_uri": str(models["v1"])},
              **kwargs}
    if isinstance(config["handler_args"], dict) and config["handler_args"].get("model_uri") == "MODEL":
        config["handler_args"]["model_uri"] = str(models["v1"])
    with pytest.raises(error) as raised:
        ConfiguredRunInference(**config)
    assert message in str(raised.value)


def test_inline_source_runs_when_the_policy_allows_it(run_pipeline, models):
    with serving_policy(Policy(allow_inline_source=True)):
        transform = ConfiguredRunInference(
            "sklearn_numpy", {"model_uri": str(models["v1"])},
            preprocess=["lambda line: __import__('numpy').array("
                        "[float(v) for v in line.split(',')])"],
        )
    out = run_pipeline(lambda p: {"r": p | beam.Create(csv(models["x"][:2])) | transform})
    assert len(out["r"]) == 2


def test_model_refresh_arguments_reach_run_inference(models, tmp_path):
    transform = ConfiguredRunInference(
        "sklearn_numpy", {"model_uri": str(models["v1"])},
        watch_model_pattern=str(tmp_path / "*.pkl"), interval=2.5,
    )
    assert transform._refresh == {"watch_model_pattern": str(tmp_path / "*.pkl"), "interval": 2.5}
