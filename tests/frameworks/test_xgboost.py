"""XGBoost handlers against XGBoost called directly, with JSON and UBJ state files."""

from __future__ import annotations

import copy
import inspect
import json
import os
import pickle
import subprocess
import sys

import apache_beam as beam
import numpy
import pandas
import pytest
import scipy.sparse
import xgboost

import liveinference
from liveinference import InvalidExampleError, ModelLoadError, RunInference
from liveinference import xgboost_inference as our_xgboost
from liveinference.frameworks.xgboost import (
    XGBoostModelHandlerDatatable,
    XGBoostModelHandlerNumpy,
    XGBoostModelHandlerPandas,
    XGBoostModelHandlerSciPy,
)

from beam_arguments import names_as_of_2_77

HANDLERS = [
    "XGBoostModelHandler", "XGBoostModelHandlerNumpy", "XGBoostModelHandlerPandas",
    "XGBoostModelHandlerSciPy", "XGBoostModelHandlerDatatable",
]
COLUMNS = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def classifier(dataset):
    x, y = dataset
    return xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(x, y)


@pytest.fixture(scope="module")
def state_files(tmp_path_factory, classifier, dataset):
    """The classifier saved as JSON and UBJ, and one trained on named columns as UBJ."""
    x, y = dataset
    directory = tmp_path_factory.mktemp("xgboost")
    classifier.save_model(directory / "model.json")
    classifier.save_model(directory / "model.ubj")
    named = xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1)
    named.fit(pandas.DataFrame(x, columns=COLUMNS), y)
    named.save_model(directory / "named.ubj")
    return {name: str(directory / name) for name in ("model.json", "model.ubj", "named.ubj")}


def _tables(x, sizes):
    """Splits the rows of x into consecutive 2-D tables of the given row counts."""
    ends = numpy.cumsum(sizes)
    return [x[end - size:end] for size, end in zip(sizes, ends)]


def test_handlers_take_beams_arguments():
    pytest.importorskip("datatable", reason="Beam's xgboost_inference imports datatable")
    from apache_beam.ml.inference import xgboost_inference as beam_xgboost

    for name in HANDLERS:
        ours = list(inspect.signature(getattr(our_xgboost, name).__init__).parameters)
        beams = list(inspect.signature(getattr(beam_xgboost, name).__init__).parameters)
        assert ours == names_as_of_2_77(beams), name


def test_the_xgboost_module_never_imports_beams_inference_package():
    code = (
        "import sys, liveinference.xgboost_inference\n"
        "assert not [m for m in sys.modules if m.startswith('apache_beam.ml')]\n"
    )
    library = os.path.dirname(os.path.dirname(liveinference.__file__))
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": library})


def test_every_handler_predicts_as_xgboost_does_in_a_pipeline(run_pipeline, state_files, classifier, dataset):
    x, _ = dataset
    sizes = [1, 3, 1, 2, 5, 1]
    tables = _tables(x, sizes)
    branches = {
        "numpy": (XGBoostModelHandlerNumpy(xgboost.XGBClassifier, state_files["model.json"]), tables),
        "pandas": (
            XGBoostModelHandlerPandas(xgboost.XGBClassifier, state_files["named.ubj"]),
            [pandas.DataFrame(t, columns=COLUMNS) for t in tables],
        ),
        "scipy": (
            XGBoostModelHandlerSciPy(xgboost.Booster, state_files["model.json"]),
            [scipy.sparse.csr_matrix(t) for t in tables],
        ),
    }
    _check_branches(run_pipeline, branches, tables, classifier)


def test_datatable_handler_predicts_as_xgboost_does_in_a_pipeline(run_pipeline, state_files, classifier, dataset):
    datatable = pytest.importorskip(
        "datatable", reason="the datatable package does not import here (it has no wheel for this Python)"
    )
    x, _ = dataset
    tables = _tables(x, [2, 1, 4])
    branches = {
        "datatable": (
            XGBoostModelHandlerDatatable(xgboost.Booster, state_files["model.ubj"], min_batch_size=3, max_batch_size=3),
            [datatable.Frame(t) for t in tables],
        )
    }
    _check_branches(run_pipeline, branches, tables, classifier)


def _check_branches(run_pipeline, branches, tables, classifier):
    """Runs each (handler, examples) branch in one pipeline; checks against XGBoost itself."""

    def build(p):
        return {
            name: p | f"Create{name}" >> beam.Create(list(enumerate(examples)), reshuffle=False)
            | f"Run{name}" >> RunInference(liveinference.KeyedModelHandler(handler))
            for name, (handler, examples) in branches.items()
        }

    out = run_pipeline(build)
    labels = [classifier.predict(t) for t in tables]
    probabilities = [classifier.get_booster().predict(xgboost.DMatrix(t)) for t in tables]
    for name, results in out.items():
        expected = probabilities if branches[name][0]._model_class is xgboost.Booster else labels
        got = dict(results)
        assert sorted(got) == list(range(len(tables))), name
        for index, want in enumerate(expected):
            numpy.testing.assert_allclose(got[index].inference, want, rtol=1e-6, err_msg=name)
        assert {r.model_id for r in got.values()} == {branches[name][0].get_model_id()}


def test_inference_args_go_to_predict(state_files, classifier, dataset):
    x, _ = dataset
    handler = XGBoostModelHandlerNumpy(xgboost.XGBClassifier, state_files["model.ubj"])
    RunInference(handler, inference_args={"output_margin": True})
    (result,) = handler.run_inference([x[:4]], handler.load_model(), {"output_margin": True})
    numpy.testing.assert_allclose(result.inference, classifier.predict(x[:4], output_margin=True), rtol=1e-6)


def test_update_model_path_loads_the_new_file_next(tmp_path, state_files, dataset):
    x, y = dataset
    flipped = tmp_path / "flipped.json"
    xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(x, 1 - y).save_model(flipped)
    handler = XGBoostModelHandlerNumpy(xgboost.XGBClassifier, state_files["model.json"])
    before = handler.run_inference([x[:10]], handler.load_model())[0].inference
    handler.update_model_path(str(flipped))
    after = handler.run_inference([x[:10]], handler.load_model())[0]
    assert list(after.inference) == list(1 - before) and after.model_id is None
    assert handler.get_model_id() == str(flipped)


def test_model_file_of_another_framework_is_named_and_explained(tmp_path, dataset):
    from sklearn.linear_model import LogisticRegression

    x, y = dataset
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression().fit(x, y)))
    with pytest.raises(ModelLoadError, match=r"cannot load .*model\.pkl.* into XGBClassifier .*Python pickle.*JSON or UBJ"):
        XGBoostModelHandlerNumpy(xgboost.XGBClassifier, str(path)).load_model()


def test_missing_model_class_says_what_to_pass(state_files):
    with pytest.raises(ValueError, match=r"needs model_class.*model\.json.*xgboost\.Booster"):
        XGBoostModelHandlerNumpy(None, state_files["model.json"])


def test_model_class_that_is_not_xgboost_is_refused(state_files):
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(ValueError, match="model_class LogisticRegression, which is not an XGBoost model"):
        XGBoostModelHandlerNumpy(LogisticRegression, state_files["model.json"])


def test_state_of_another_model_class_names_both(state_files):
    with pytest.raises(ModelLoadError, match=r"model\.json.* into XGBRegressor .*Expecting: regressor, got: classifier"):
        XGBoostModelHandlerNumpy(xgboost.XGBRegressor, state_files["model.json"]).load_model()


def test_state_file_from_another_xgboost_version_names_both_versions(tmp_path, state_files):
    """A JSON model as XGBoost 1.5 wrote it: its trees lack the categorical fields of 1.6+."""
    with open(state_files["model.json"]) as file:
        state = json.load(file)
    old = copy.deepcopy(state)
    old["version"] = [1, 5, 0]
    for tree in old["learner"]["gradient_booster"]["model"]["trees"]:
        for field in ("categories", "categories_nodes", "categories_segments", "categories_sizes"):
            tree.pop(field)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    with pytest.raises(
        ModelLoadError,
        match=rf"old\.json.* written by XGBoost 1\.5\.0 and XGBoost {xgboost.__version__} cannot read it.*save_model",
    ):
        XGBoostModelHandlerNumpy(xgboost.XGBClassifier, str(path)).load_model()


def test_missing_state_file_names_the_path(tmp_path):
    with pytest.raises(ModelLoadError, match=r"nope\.json.*does not exist"):
        XGBoostModelHandlerNumpy(xgboost.Booster, str(tmp_path / "nope.json")).load_model()


def test_examples_of_the_wrong_width_name_the_expected_features(state_files):
    handler = XGBoostModelHandlerNumpy(xgboost.XGBClassifier, state_files["model.json"])
    with pytest.raises(InvalidExampleError, match=r"model\.json.*expects examples with 4 features \(columns\), got an example of shape \(2, 3\)"):
        handler.run_inference([numpy.zeros((1, 4)), numpy.zeros((2, 3))], handler.load_model())


def test_one_dimensional_example_says_how_to_reshape(state_files):
    handler = XGBoostModelHandlerNumpy(xgboost.XGBClassifier, state_files["model.json"])
    with pytest.raises(InvalidExampleError, match=r"got a ndarray of shape \(4,\); reshape one row with row\.reshape\(1, -1\)"):
        handler.run_inference([numpy.zeros(4)], handler.load_model())


def test_dataframe_without_the_trained_columns_names_the_missing_ones(state_files):
    handler = XGBoostModelHandlerPandas(xgboost.XGBClassifier, state_files["named.ubj"])
    frame = pandas.DataFrame(numpy.zeros((1, 4)), columns=["a", "b", "c", "e"])
    with pytest.raises(InvalidExampleError, match=r"needs columns \['a', 'b', 'c', 'd'\]; an example lacks \['d'\]"):
        handler.run_inference([frame], handler.load_model())


def test_batch_mixing_kinds_of_table_is_refused(state_files):
    handler = XGBoostModelHandlerNumpy(xgboost.XGBClassifier, state_files["model.json"])
    with pytest.raises(InvalidExampleError, match=r"mixes examples of kinds \['numpy', 'pandas'\]"):
        handler.run_inference([numpy.zeros((1, 4)), pandas.DataFrame(numpy.zeros((1, 4)))], handler.load_model())


def test_bad_rows_go_to_dead_letters_and_the_rest_are_predicted(run_pipeline, state_files, classifier, dataset):
    x, _ = dataset
    good = [(f"g{i}", x[i:i + 1]) for i in range(12)]
    bad = [("wide", numpy.zeros((1, 5))), ("flat", numpy.zeros(4))]
    handler = liveinference.KeyedModelHandler(
        XGBoostModelHandlerNumpy(xgboost.XGBClassifier, state_files["model.json"], min_batch_size=14, max_batch_size=14)
    )

    def build(p):
        results, dead = p | beam.Create(good + bad, reshuffle=False) | RunInference(handler).with_exception_handling()
        return {"results": results, "dead": dead.failed_inferences}

    out = run_pipeline(build)
    assert len(out["results"]) + len(out["dead"]) == 14
    assert sorted(key for key, _ in out["results"]) == sorted(key for key, _ in good)
    for key, result in out["results"]:
        assert list(result.inference) == list(classifier.predict(dict(good)[key]))
    assert sorted(record.element[0] for record in out["dead"]) == ["flat", "wide"]
    assert all("InvalidExampleError" in record.exception_type for record in out["dead"])
