"""liveinference matches apache_beam.ml.inference name for name, and gives the same results."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import apache_beam as beam
import pytest
from apache_beam.ml.inference import base as beam_base
from apache_beam.ml.inference import sklearn_inference as beam_sklearn

import liveinference
from liveinference import base as our_base
from liveinference import sklearn_inference as our_sklearn

from beam_arguments import names_as_of_2_77

BASE_NAMES = [
    "RunInference", "ModelHandler", "KeyedModelHandler", "MaybeKeyedModelHandler",
    "PredictionResult", "ModelMetadata", "RunInferenceDLQ", "KeyModelMapping",
    "KeyModelPathMapping",
]


def _public_methods(cls) -> set:
    return {
        name for name, value in vars(cls).items() if callable(value) and not name.startswith("_")
    }


def _parameters(fn) -> list:
    return [name for name in inspect.signature(fn).parameters if name != "self"]


@pytest.mark.parametrize("name", BASE_NAMES)
def test_every_beam_base_name_is_importable_from_the_same_module_path(name):
    assert hasattr(beam_base, name)
    assert getattr(our_base, name) is getattr(liveinference, name)


def test_model_handler_has_beams_methods_and_only_get_model_id_besides():
    # get_model_id (issue 10): the id RunInference stamps on the first model's predictions.
    ours = _public_methods(liveinference.ModelHandler)
    assert ours - _public_methods(beam_base.ModelHandler) == {"get_model_id"}
    assert _public_methods(beam_base.ModelHandler) <= ours


@pytest.mark.parametrize("name", ["PredictionResult", "ModelMetadata"])
def test_records_have_beams_fields(name):
    assert getattr(liveinference, name)._fields == getattr(beam_base, name)._fields


def test_dead_letters_keep_beams_fields_first_and_add_failed_model_loads():
    ours = liveinference.RunInferenceDLQ._fields
    assert ours[:3] == beam_base.RunInferenceDLQ._fields
    assert ours[3:] == ("failed_model_loads",)


# RunInference's keyword-only parameters Beam 2.77 added after model_identifier.
RUNINFERENCE_2_77 = ["use_model_manager", "model_manager_args", "monitoring_transform"]


def _runinference_names_as_of_2_77(names: list) -> list:
    """Beam's RunInference parameters, with 2.77's additions if the installed Beam lacks them."""
    if RUNINFERENCE_2_77[0] in names:
        return names
    at = names.index("model_identifier") + 1
    return names[:at] + RUNINFERENCE_2_77 + names[at:]


def test_runinference_takes_beams_arguments_except_the_test_clock():
    ours = _parameters(liveinference.RunInference.__init__)
    beams = [name for name in _parameters(beam_base.RunInference.__init__) if name != "clock"]
    assert ours == _runinference_names_as_of_2_77(beams)
    assert _parameters(liveinference.RunInference.with_exception_handling) == _parameters(
        beam_base.RunInference.with_exception_handling
    )
    if hasattr(beam_base.RunInference, "with_monitoring_transform"):
        assert _parameters(liveinference.RunInference.with_monitoring_transform) == _parameters(
            beam_base.RunInference.with_monitoring_transform
        )


class _Outlet(beam.PTransform):
    """A monitoring transform that keeps the PCollection it was given, for the test to collect."""

    def __init__(self):
        super().__init__()
        self.given = None

    def expand(self, predictions):
        self.given = predictions
        return predictions


def test_the_monitoring_transform_gets_the_predictions_before_postprocessing(
    run_pipeline, sklearn_model_path, dataset
):
    rows = list(dataset[0][:12])
    handler = our_sklearn.SklearnModelHandlerNumpy(sklearn_model_path).with_postprocess_fn(
        lambda result: int(result.inference)
    )
    given, chained = _Outlet(), _Outlet()

    def build(p):
        source = p | beam.Create(rows)
        results = source | "Given" >> our_base.RunInference(handler, monitoring_transform=given)
        _ = source | "Chained" >> our_base.RunInference(handler).with_monitoring_transform(chained)
        return {"results": results, "given": given.given, "chained": chained.given}

    out = run_pipeline(build)
    for monitored in (out["given"], out["chained"]):
        assert all(isinstance(r, liveinference.PredictionResult) for r in monitored)
        assert {r.model_id for r in monitored} == {sklearn_model_path}
        assert sorted(int(r.inference) for r in monitored) == sorted(out["results"])
    assert len(out["results"]) == 12
    assert "monitoring_transform" in our_base.RunInference(
        handler, monitoring_transform=_Outlet()
    ).annotations()


@pytest.mark.parametrize(
    "arguments", [{"use_model_manager": True}, {"model_manager_args": {"x": 1}}]
)
def test_beams_model_manager_is_refused_naming_what_to_use_instead(sklearn_model_path, arguments):
    with pytest.raises(ValueError, match="does not run Beam's ModelManager.*large_model=True"):
        our_base.RunInference(our_sklearn.SklearnModelHandlerNumpy(sklearn_model_path), **arguments)


@pytest.mark.parametrize("name", ["SklearnModelHandlerNumpy", "SklearnModelHandlerPandas"])
def test_sklearn_handlers_take_beams_arguments(name):
    assert _parameters(getattr(our_sklearn, name).__init__) == names_as_of_2_77(
        _parameters(getattr(beam_sklearn, name).__init__)
    )


def test_the_library_never_imports_beams_inference_package():
    code = (
        "import sys, liveinference, liveinference.base, liveinference.sklearn_inference\n"
        "import liveinference.frameworks.sklearn\n"
        "assert not [m for m in sys.modules if m.startswith('apache_beam.ml')], "
        "[m for m in sys.modules if m.startswith('apache_beam.ml')]\n"
    )
    library = os.path.dirname(os.path.dirname(liveinference.__file__))
    subprocess.run(
        [sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": library}
    )


def test_same_pipeline_gives_the_same_predictions_with_either_import(
    run_pipeline, sklearn_model_path, dataset
):
    x, _ = dataset
    rows = list(x[:30])

    def build(p):
        source = p | beam.Create(rows)
        return {
            "ours": source | "Ours" >> our_base.RunInference(
                our_sklearn.SklearnModelHandlerNumpy(sklearn_model_path)
            ),
            "beams": source | "Beams" >> beam_base.RunInference(
                beam_sklearn.SklearnModelHandlerNumpy(sklearn_model_path)
            ),
        }

    out = run_pipeline(build)
    def as_tuples(results):
        return sorted((tuple(r.example), r.inference, r.model_id) for r in results)

    assert as_tuples(out["ours"]) == as_tuples(out["beams"])
    assert len(out["ours"]) == 30
