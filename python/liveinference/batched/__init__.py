"""RunInference on batch elements: a PCollection whose elements are whole tables (NumPy 2-D
arrays, pandas DataFrames, pyarrow RecordBatches or Tables), scored one framework call per
element, with the same handlers, model refresh and per-row dead letters as the per-row path.
Use it through `RunInference(handler).on_batches()`.
"""

from liveinference.batched.tables import INFERENCE, MODEL_ID, BatchRow

__all__ = ["INFERENCE", "MODEL_ID", "BatchRow"]
