"""Beam's stock Java RunInference, Python side: the model loader's source compiles with Beam's
`ml.inference` names resolved to liveinference, runs in liveinference's RunInference, and
never imports Beam's implementation. (The Java side, with Beam's own class on Prism, is
java/src/test/java/dev/liveinference/StockBeamRunInferenceTest.java.)"""

from __future__ import annotations

import subprocess
import sys

import apache_beam as beam
import numpy
import pytest
from apache_beam.testing.util import assert_that, equal_to

import liveinference
from conftest import load
from liveinference import base as liveinference_base
from liveinference import sklearn_inference
from liveinference_expansion.policy import Policy
from liveinference_expansion.stock_beam import BeamRunInference, load_model_handler_provider

BEAM = "apache_beam.ml.inference"
ALLOWED = Policy(allow_inline_source=True)


def test_from_imports_of_beam_modules_give_liveinference_classes(models):
    provider = load_model_handler_provider(
        f"from {BEAM}.sklearn_inference import SklearnModelHandlerNumpy\n"
        f"from {BEAM}.base import KeyedModelHandler\n"
        "def get_model_handler(model_uri):\n"
        "  return KeyedModelHandler(SklearnModelHandlerNumpy(model_uri))\n")
    handler = provider(model_uri=str(models["v1"]))
    assert isinstance(handler, liveinference.KeyedModelHandler)


def test_dotted_imports_give_liveinference_modules_and_leave_beam_alone():
    provider = load_model_handler_provider(
        f"import {BEAM}.base as aliased\n"
        f"import {BEAM}.sklearn_inference\n"
        "def modules():\n"
        f"  return aliased, {BEAM}.sklearn_inference, apache_beam.Map, beam.Map\n")
    assert provider() == (liveinference_base, sklearn_inference, beam.Map, beam.Map)


def test_qualified_names_and_expressions_resolve_like_beams_callable_source(models):
    named = load_model_handler_provider(f"{BEAM}.sklearn_inference.SklearnModelHandlerNumpy")
    assert named is sklearn_inference.SklearnModelHandlerNumpy
    lam = load_model_handler_provider(
        "lambda model_uri: __import__('liveinference').sklearn_inference"
        ".SklearnModelHandlerNumpy(model_uri)")
    assert isinstance(lam(str(models["v1"])), sklearn_inference.SklearnModelHandlerNumpy)


def test_a_beam_module_without_a_liveinference_mirror_is_named():
    with pytest.raises(ImportError, match="no_such_inference.*cannot be imported"):
        load_model_handler_provider(f"from {BEAM}.no_such_inference import X\n"
                                    "def f():\n  return X\n")


def test_inline_source_needs_the_policy_and_a_liveinference_handler(models):
    source = "def get_model_handler(model_uri):\n  return model_uri\n"
    with pytest.raises(PermissionError, match="--allow-inline-source"):
        BeamRunInference(source, policy=Policy(), model_uri=str(models["v1"]))
    with pytest.raises(TypeError, match="returned str, not a liveinference ModelHandler"):
        BeamRunInference(source, policy=ALLOWED, model_uri=str(models["v1"]))


def test_a_python_pipeline_predicts_as_scikit_learn(models):
    rows = [list(row) for row in models["x"][:10]]
    expected = load(models["v1"]).predict(numpy.array(rows)).tolist()
    transform = BeamRunInference(
        f"from {BEAM}.sklearn_inference import SklearnModelHandlerNumpy\n"
        "def get_model_handler(model_uri):\n"
        "  return SklearnModelHandlerNumpy(model_uri)\n",
        policy=ALLOWED, model_uri=str(models["v1"]))
    with beam.Pipeline() as pipeline:
        labels = (pipeline | beam.Create(rows) | transform
                  | beam.Map(lambda result: (list(result.example), int(result.inference))))
        assert_that(labels, equal_to(list(zip(rows, expected))))


def test_beams_inference_package_is_never_imported(models):
    script = (
        "import sys\n"
        "from liveinference_expansion.policy import Policy\n"
        "from liveinference_expansion.stock_beam import BeamRunInference\n"
        "BeamRunInference(\n"
        f"    'from {BEAM}.sklearn_inference import SklearnModelHandlerNumpy\\n'\n"
        f"    'import {BEAM}.base\\n'\n"
        "    'def get_model_handler(model_uri):\\n'\n"
        f"    '  return {BEAM}.base.KeyedModelHandler(SklearnModelHandlerNumpy(model_uri))\\n',\n"
        f"    policy=Policy(allow_inline_source=True), model_uri={str(models['v1'])!r})\n"
        "print(sorted(name for name in sys.modules if name.startswith('apache_beam.ml')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
