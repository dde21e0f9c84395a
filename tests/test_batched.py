"""RunInference(...).on_batches(): batch elements in (Parquet record batches, DataFrames,
NumPy arrays), one output batch per input batch out, bad rows dead-lettered one by one."""

from __future__ import annotations

import glob
import pickle

import apache_beam as beam
import numpy
import pandas
import pyarrow
import pyarrow.parquet
import pytest
from apache_beam.io.parquetio import ReadFromParquetBatched, WriteToParquetBatched
from pipeline_helpers import FEATURES, make_dataset

from liveinference import RunInference
from liveinference.batched import BatchRow
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy, SklearnModelHandlerPandas
from liveinference.testing import FaultOnMark

NAMES = [f"f{index}" for index in range(FEATURES)]


def _table(x: numpy.ndarray, start: int = 0) -> pyarrow.Table:
    columns = {"id": numpy.arange(start, start + len(x))}
    columns.update({name: x[:, index] for index, name in enumerate(NAMES)})
    return pyarrow.table(columns)


def _model(path: str):
    with open(path, "rb") as file:
        return pickle.load(file)


def test_parquet_in_parquet_out_one_output_batch_per_input_batch(
    tmp_path, run_pipeline, sklearn_model_path
):
    x, _ = make_dataset(rows=500, seed=3)
    pyarrow.parquet.write_table(_table(x), str(tmp_path / "in.parquet"), row_group_size=100)
    schema = _table(x[:1]).schema.append(pyarrow.field("inference", pyarrow.int64())).append(
        pyarrow.field("model_id", pyarrow.string()))

    def build(p):
        batches = p | ReadFromParquetBatched(str(tmp_path / "in.parquet"))
        scored = batches | RunInference(
            SklearnModelHandlerNumpy(sklearn_model_path)).on_batches(feature_columns=NAMES)
        _ = scored | WriteToParquetBatched(str(tmp_path / "out"), schema,
                                           file_name_suffix=".parquet")
        return {"inputs": batches | "InputRows" >> beam.Map(len),
                "outputs": scored | "OutputRows" >> beam.Map(len)}

    out = run_pipeline(build)
    assert sorted(out["outputs"]) == sorted(out["inputs"]) and sum(out["inputs"]) == 500
    written = pyarrow.concat_tables(
        pyarrow.parquet.read_table(path) for path in glob.glob(str(tmp_path / "out*.parquet"))
    ).sort_by("id")
    assert written.schema.names == ["id", *NAMES, "inference", "model_id"]
    expected = _model(sklearn_model_path).predict(x)
    assert written.column("inference").to_pylist() == expected.tolist()
    assert set(written.column("model_id").to_pylist()) == {sklearn_model_path}


@pytest.mark.parametrize("kind", ["numpy", "pandas", "record_batch"])
def test_every_batch_kind_comes_back_as_its_kind_with_the_two_columns(
    run_pipeline, sklearn_model_path, kind
):
    x, _ = make_dataset(rows=40, seed=4)
    make = {
        "numpy": lambda part: part,
        "pandas": lambda part: pandas.DataFrame(part, columns=NAMES),
        "record_batch": lambda part: _table(part).to_batches()[0],
    }[kind]
    handler = SklearnModelHandlerNumpy(sklearn_model_path)
    if kind == "pandas":
        handler = SklearnModelHandlerPandas(sklearn_model_path)
    parts = [make(x[:25]), make(x[25:])]

    out = run_pipeline(lambda p: {
        "out": p | beam.Create(parts, reshuffle=False) | RunInference(handler).on_batches(
            feature_columns=NAMES if kind == "record_batch" else None)})

    assert sorted(map(len, out["out"])) == [15, 25]
    expected = _model(sklearn_model_path).predict(x).tolist()
    outputs = sorted(out["out"], key=len, reverse=True)
    if kind == "pandas":
        assert all(isinstance(batch, pandas.DataFrame) for batch in outputs)
        assert list(outputs[0].columns) == [*NAMES, "inference", "model_id"]
        got = [value for batch in outputs for value in batch["inference"]]
    else:
        assert all(isinstance(batch, pyarrow.RecordBatch) for batch in outputs)
        names = ["id", *NAMES] if kind == "record_batch" else [str(i) for i in range(FEATURES)]
        assert outputs[0].schema.names == [*names, "inference", "model_id"]
        got = [value for batch in outputs for value in batch.column("inference").to_pylist()]
    assert got == expected


def test_a_bad_row_is_dead_lettered_with_its_position_and_the_rest_of_its_batch_goes_on(
    run_pipeline, sklearn_model_path
):
    x, _ = make_dataset(rows=68, seed=5)
    bad = [3, 40, 41, 64, 65, 66, 67]
    x[bad, 1] = numpy.nan  # scikit-learn refuses NaN for the whole call
    parts = [_table(x[:32]), _table(x[32:64], start=32), _table(x[64:], start=64)]

    def build(p):
        scored, dlq = p | beam.Create(parts, reshuffle=False) | RunInference(
            SklearnModelHandlerNumpy(sklearn_model_path)
        ).on_batches(feature_columns=NAMES).with_exception_handling()
        return {"out": scored, "failed": dlq.failed_inferences}

    out = run_pipeline(build)
    failed = out["failed"]
    assert len(out["out"]) == 2  # the batch whose every row failed yields no output batch
    assert sum(map(len, out["out"])) + len(failed) == 68
    assert sorted(record.element.values["id"] for record in failed) == bad
    assert sorted(record.element.position for record in failed) == [0, 1, 2, 3, 3, 8, 9]
    assert all(isinstance(record.element, BatchRow) for record in failed)
    assert all(record.stage == "inference" and "NaN" in record.message for record in failed)
    assert {record.model_id for record in failed} == {sklearn_model_path}
    good = [i for i in range(68) if i not in bad]
    kept = pyarrow.concat_tables(out["out"]).sort_by("id")
    assert kept.column("id").to_pylist() == good
    expected = _model(sklearn_model_path).predict(x[good]).tolist()
    assert kept.column("inference").to_pylist() == expected


def test_a_timeout_dead_letters_its_whole_batch_element_unsplit(run_pipeline, sklearn_model_path):
    slow_mark = 99.0
    x, _ = make_dataset(rows=16, seed=6)
    x[5, 0] = slow_mark
    handler = FaultOnMark(SklearnModelHandlerNumpy(sklearn_model_path), slow_mark, "slow", 3)

    def build(p):
        scored, dlq = p | beam.Create([x[:8], x[8:]], reshuffle=False) | RunInference(
            handler).on_batches().with_exception_handling(timeout=1)
        return {"out": scored, "failed": dlq.failed_inferences}

    out = run_pipeline(build)
    failed = out["failed"]
    # Split, the slow row's halves would time out again and its seven neighbours be scored.
    assert sorted(record.element.position for record in failed) == list(range(8))
    assert all(record.exception_type == "builtins.TimeoutError" for record in failed)
    assert [len(batch) for batch in out["out"]] == [8]


def test_a_postprocess_fn_makes_the_output_batch(run_pipeline, sklearn_model_path):
    x, _ = make_dataset(rows=10, seed=6)

    def only_ids(rows, inferences, model_id):
        return pyarrow.table({"id": rows.column("id"), "label": inferences})

    out = run_pipeline(lambda p: {"out": p | beam.Create([_table(x)]) | RunInference(
        SklearnModelHandlerNumpy(sklearn_model_path)
    ).on_batches(feature_columns=NAMES, postprocess_fn=only_ids)})

    [table] = out["out"]
    assert table.schema.names == ["id", "label"]
    assert table.column("label").to_pylist() == _model(sklearn_model_path).predict(x).tolist()


def test_handlers_with_per_example_functions_are_refused_at_construction(sklearn_model_path):
    handler = SklearnModelHandlerNumpy(sklearn_model_path).with_preprocess_fn(numpy.asarray)
    with pytest.raises(TypeError, match="per-example preprocess functions cannot run"):
        RunInference(handler).on_batches()


def test_an_element_that_is_not_a_batch_fails_naming_the_kinds(run_pipeline, sklearn_model_path):
    with pytest.raises(Exception, match="takes a NumPy 2-D array, a pandas DataFrame"):
        run_pipeline(lambda p: {"out": p | beam.Create([[1.0] * FEATURES]) | RunInference(
            SklearnModelHandlerNumpy(sklearn_model_path)).on_batches()})
