"""Preprocess functions the tests allow by module name: a CSV line into the table each
XGBoost handler takes (one row), as a user's own module would provide them."""

from typing import Any

import numpy

from liveinference_expansion.functions import parse_csv_floats

COLUMNS = ["f0", "f1", "f2", "f3"]


def to_row_matrix(line: str) -> numpy.ndarray:
    """A 1 x N float64 array."""
    return parse_csv_floats(line).reshape(1, -1)


def to_frame(line: str) -> Any:
    """A one-row pandas DataFrame with columns f0..f3."""
    import pandas

    return pandas.DataFrame(to_row_matrix(line), columns=COLUMNS)


def to_sparse(line: str) -> Any:
    """A 1 x N scipy CSR matrix."""
    import scipy.sparse

    return scipy.sparse.csr_matrix(to_row_matrix(line))


def to_datatable(line: str) -> Any:
    """A one-row datatable Frame."""
    import datatable

    return datatable.Frame(to_row_matrix(line))



def example_as_floats(result: Any) -> Any:
    """Turns the one-row table of a PredictionResult's example back into a flat float array,
    so that the prediction Row can carry it as array<double>."""
    table = result.example
    if hasattr(table, "toarray"):
        table = table.toarray()
    elif hasattr(table, "to_numpy"):
        table = table.to_numpy()
    return result._replace(example=numpy.asarray(table, dtype=numpy.float64).ravel())
