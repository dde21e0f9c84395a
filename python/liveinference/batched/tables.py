"""The batch elements RunInference scores whole: NumPy 2-D arrays, pandas DataFrames, and
pyarrow RecordBatches and Tables (what `ReadFromParquetBatched` yields).

`Table.of(element)` wraps one; it gives the features as one 2-D NumPy array (or DataFrame),
a row by its position (for a dead letter), and the output batch: the kept rows, their
inferences and the id of the model that made them, in the input's own kind (a NumPy array
gives a pyarrow RecordBatch whose feature columns are named "0", "1", ...).
"""

from __future__ import annotations

from typing import Any, List, NamedTuple, Optional, Sequence

import numpy

__all__ = ["INFERENCE", "MODEL_ID", "BatchRow", "Table"]

INFERENCE = "inference"
MODEL_ID = "model_id"
_KINDS = "a NumPy 2-D array, a pandas DataFrame, or a pyarrow RecordBatch or Table"


class BatchRow(NamedTuple):
    """One row of a batch element, as its dead letter carries it.

    Attributes:
        position: The row's index in its batch element (0 for the first row).
        values: The row: a dict of column name to value, or a 1-D NumPy array for a
            NumPy batch.
    """

    position: int
    values: Any


def _library(element: Any) -> str:
    return type(element).__module__.split(".")[0]


class Table:
    """One batch element and what RunInference needs of it.

    Args:
        element: The batch element.
        kind: "numpy", "pandas" or "arrow".
        columns: The names of its columns.
    """

    def __init__(self, element: Any, kind: str, columns: List[str]) -> None:
        self.element = element
        self.kind = kind
        self.columns = columns

    @classmethod
    def of(cls, element: Any) -> "Table":
        """Wraps a batch element.

        Raises:
            TypeError: if the element is not one of the batch kinds, or is a NumPy array
                that is not 2-D.
        """
        library = _library(element)
        if isinstance(element, numpy.ndarray):
            if element.ndim != 2:
                raise TypeError(
                    f"a NumPy batch must be 2-D (rows x features), got shape {element.shape}; "
                    "reshape it, or use the per-row RunInference for other examples"
                )
            return cls(element, "numpy", [str(index) for index in range(element.shape[1])])
        if library == "pandas" and hasattr(element, "columns"):
            return cls(element, "pandas", [str(name) for name in element.columns])
        if library == "pyarrow" and hasattr(element, "schema"):
            return cls(element, "arrow", list(element.schema.names))
        raise TypeError(
            f"RunInference(...).on_batches() takes {_KINDS} per element, got "
            f"{type(element).__name__}; use RunInference without on_batches() for one "
            "example per element"
        )

    def __len__(self) -> int:
        return int(self.element.shape[0]) if self.kind != "arrow" else self.element.num_rows

    @property
    def nbytes(self) -> int:
        """The element's size in memory, in bytes."""
        if self.kind == "pandas":
            return int(numpy.sum(self.element.memory_usage(deep=False)))
        return int(self.element.nbytes)

    def _names(self, feature_columns: Optional[Sequence[str]]) -> List[str]:
        if feature_columns is None:
            return self.columns
        missing = [name for name in feature_columns if name not in self.columns]
        if missing:
            raise KeyError(
                f"feature columns {missing} are not in the batch, whose columns are "
                f"{self.columns}; fix feature_columns in on_batches()"
            )
        return list(feature_columns)

    def matrix(self, feature_columns: Optional[Sequence[str]] = None) -> numpy.ndarray:
        """The features as one 2-D NumPy array, rows by features, in column order.

        Args:
            feature_columns: The columns to use; None for all.

        Raises:
            KeyError: naming the feature columns the batch lacks.
        """
        names = self._names(feature_columns)
        if self.kind == "numpy":
            if feature_columns is None:
                return self.element
            return self.element[:, [self.columns.index(name) for name in names]]
        if self.kind == "pandas":
            chosen = self.element if feature_columns is None else self.element[names]
            return chosen.to_numpy()
        arrays = [self.element.column(name).to_numpy() for name in names]
        return numpy.column_stack(arrays) if arrays else numpy.empty((len(self), 0))

    def frame(self, feature_columns: Optional[Sequence[str]] = None) -> Any:
        """The features as a pandas DataFrame (the element itself for a DataFrame).

        Raises:
            KeyError: naming the feature columns the batch lacks.
        """
        import pandas

        names = self._names(feature_columns)
        if self.kind == "pandas":
            return self.element if feature_columns is None else self.element[names]
        if self.kind == "numpy":
            return pandas.DataFrame(self.matrix(feature_columns), columns=names)
        return self.element.select(names).to_pandas()

    def row(self, position: int) -> BatchRow:
        """The row at `position`, for its dead letter."""
        if self.kind == "numpy":
            return BatchRow(position, self.element[position])
        if self.kind == "pandas":
            return BatchRow(position, self.element.iloc[position].to_dict())
        return BatchRow(position, self.element.slice(position, 1).to_pylist()[0])

    def rows(self, positions: Sequence[int]) -> Any:
        """The rows at `positions` (in order), in the element's own kind."""
        if len(positions) == len(self):
            return self.element
        index = numpy.asarray(positions, dtype=numpy.int64)
        if self.kind == "numpy":
            return self.element[index]
        if self.kind == "pandas":
            return self.element.iloc[index]
        return self.element.take(index)

    def output(self, positions: Sequence[int], inferences: Any, model_id: str) -> Any:
        """The kept rows with an `inference` and a `model_id` column.

        Args:
            positions: The rows kept, in order.
            inferences: One inference per kept row: a NumPy array (a 2-D one gives each row
                its inference row) or a sequence.
            model_id: The model that made every one of them.

        Returns:
            A DataFrame for a DataFrame, else a pyarrow batch of the input's kind (a
            RecordBatch for a NumPy array).
        """
        kept = self.rows(positions)
        if self.kind == "pandas":
            out = kept.copy(deep=False)
            out[INFERENCE] = _pandas_column(inferences)
            out[MODEL_ID] = model_id
            return out
        import pyarrow

        if self.kind == "numpy":
            kept = pyarrow.RecordBatch.from_arrays(
                [pyarrow.array(column) for column in numpy.asarray(kept).T], names=self.columns
            )
        length = len(positions)
        columns = [_arrow_column(inferences), pyarrow.array([model_id] * length, pyarrow.string())]
        if isinstance(kept, pyarrow.Table):
            return kept.append_column(INFERENCE, columns[0]).append_column(MODEL_ID, columns[1])
        return pyarrow.RecordBatch.from_arrays(
            [*kept.columns, *columns], names=[*kept.schema.names, INFERENCE, MODEL_ID]
        )


def _pandas_column(inferences: Any) -> Any:
    if isinstance(inferences, numpy.ndarray) and inferences.ndim == 1:
        return inferences
    return list(inferences)


def _arrow_column(inferences: Any) -> Any:
    """A pyarrow array of the inferences; rows of a 2-D array become fixed-size lists."""
    import pyarrow

    if isinstance(inferences, numpy.ndarray) and inferences.ndim == 2:
        flat = pyarrow.array(numpy.ascontiguousarray(inferences).reshape(-1))
        return pyarrow.FixedSizeListArray.from_arrays(flat, inferences.shape[1])
    if isinstance(inferences, numpy.ndarray) and inferences.ndim == 1:
        return pyarrow.array(inferences)
    return pyarrow.array(list(inferences))

