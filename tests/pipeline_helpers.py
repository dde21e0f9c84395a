"""The pipeline helpers of `liveinference.testing`, under the name the test suites import.

`Collect` writes what reaches a sink, `read_collected` reads it back, `query_metrics` reads
a run's metrics; they work on any runner whose workers share the file system.
"""

from __future__ import annotations

from liveinference.testing import Collect, query_metrics, read_collected

__all__ = ["Collect", "query_metrics", "read_collected"]
