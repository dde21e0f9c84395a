"""A model swap in the middle of a stream of batch elements: no batch mixes models, and every
output row's model_id names the model that made its inference."""

from __future__ import annotations

import apache_beam as beam
import numpy
import pyarrow
from refresh_models import FEATURES, write_model
from swap_stream import DEADLINE, POLL, paced_rows

from liveinference import RunInference
from liveinference.frameworks.sklearn import SklearnModelHandlerNumpy
from liveinference.testing import read_collected, when

ROWS = 16            # rows per batch element
BEFORE_SWAP = 3      # batches of the first model before the second lands
AFTER_SWAP = 3       # batches of the second model before the stream stops


def _batch(index: int) -> pyarrow.Table:
    columns = {"batch": numpy.full(ROWS, index), "row": numpy.arange(ROWS)}
    columns.update({f"f{i}": numpy.full(ROWS, float(index)) for i in range(FEATURES)})
    return pyarrow.table(columns)


def _model_ids(table: pyarrow.Table) -> set:
    return set(table.column("model_id").to_pylist())


def test_a_swap_mid_stream_never_splits_a_batch_and_each_row_names_its_model(
    run_pipeline, tmp_path
):
    first = write_model(str(tmp_path / "v1.pkl"), 1)
    watched = tmp_path / "watched"
    watched.mkdir()
    second = str(watched / "v2.pkl")
    stop, collected = str(tmp_path / "stop"), str(tmp_path / "out" / "results")

    def batches_of(model_id: str) -> int:
        return sum(_model_ids(table) == {model_id} for table in read_collected(collected))

    steps = when([
        (lambda: batches_of(first) >= BEFORE_SWAP, lambda: write_model(second, 2)),
        (lambda: batches_of(second) >= AFTER_SWAP, lambda: open(stop, "w").close()),
    ], timeout=DEADLINE)

    def build(p):
        batches = paced_rows(p, "Batches", stop) | "AsTables" >> beam.Map(_batch)
        scored, dlq = batches | RunInference(
            SklearnModelHandlerNumpy(first),
            watch_model_pattern=str(watched / "*.pkl"),
            interval=POLL,
        ).on_batches(feature_columns=[f"f{i}" for i in range(FEATURES)]).with_exception_handling()
        return {"results": scored, "failed": dlq.failed_inferences}

    out = run_pipeline(build, streaming=True)
    steps.join(timeout=DEADLINE)
    assert out["failed"] == []
    tables = sorted(out["results"], key=lambda table: table.column("batch")[0].as_py())
    assert [table.column("batch")[0].as_py() for table in tables] == list(range(len(tables)))
    assert all(table.num_rows == ROWS for table in tables)
    labels = {first: 1, second: 2}
    served = []
    for table in tables:
        [model_id] = _model_ids(table)  # one model per batch element
        assert set(table.column("inference").to_pylist()) == {labels[model_id]}
        if not served or served[-1] != model_id:
            served.append(model_id)
    assert served == [first, second]
