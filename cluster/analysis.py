"""What the records of a cluster run say: who served which version when, what was lost.

Records come from `cluster.observe` (one per prediction or dead letter, naming the worker);
a worker is (taskmanager, pid). The tests assert on these figures and the benchmark reports
them. Rows are identified by their first feature (`cluster.pipelines.RowOf`).
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, Iterable, List, Optional, Set, Tuple

__all__ = [
    "Worker",
    "every_worker_serves",
    "first_served",
    "rejected_on",
    "row_counts",
    "versions_by_worker",
]

Worker = Tuple[str, int]


def versions_by_worker(predictions: Iterable[dict], since: float = 0.0) -> Dict[Worker, List[int]]:
    """Each worker's predicted labels (= model versions), in the order it made them.

    Args:
        predictions: prediction records.
        since: only records made at or after this Unix time.
    """
    served: Dict[Worker, List[int]] = {}
    for record in sorted(predictions, key=lambda r: r["time"]):
        if record["time"] >= since:
            served.setdefault((record["taskmanager"], record["pid"]), []).append(
                int(record["inference"])
            )
    return served


def every_worker_serves(predictions: Iterable[dict], version: int, taskmanagers: Set[str],
                        since: float = 0.0) -> bool:
    """Whether workers on all `taskmanagers` predict, and each has served `version`.

    Args:
        predictions: prediction records.
        version: the label the version predicts.
        taskmanagers: the TaskManagers that must have workers.
        since: only workers (and predictions) from this Unix time on count.
    """
    served = versions_by_worker(predictions, since)
    return {tm for tm, _ in served} == taskmanagers and all(
        version in versions for versions in served.values()
    )


def first_served(predictions: Iterable[dict], version: int) -> Dict[Worker, float]:
    """The Unix time of each worker's first prediction with `version`."""
    first: Dict[Worker, float] = {}
    for record in predictions:
        if int(record["inference"]) == version:
            worker = (record["taskmanager"], record["pid"])
            first[worker] = min(first.get(worker, record["time"]), record["time"])
    return first


def rejected_on(failed_loads: Iterable[dict], file_name: str) -> Set[str]:
    """The TaskManagers whose workers rejected the model file named `file_name`."""
    return {
        record["taskmanager"] for record in failed_loads
        if (record.get("model_id") or "").endswith(file_name)
    }


def row_counts(rows_in: int, predictions: List[dict], failed: List[dict],
               row_of_failure: Optional[str] = "element") -> Dict[str, int]:
    """Rows in and out, dead letters, rows lost and duplicates (from at-least-once replay).

    Args:
        rows_in: how many rows the source emitted (ids 0 .. rows_in - 1).
        predictions: prediction records (row id in `example[0]`).
        failed: dead-letter records of inference (row id in `element[0]`).
        row_of_failure: the field of a dead letter that holds the row.

    Returns:
        {"rows_in", "rows_out", "dead_letters", "lost", "duplicates"}: `rows_out` and
        `dead_letters` count distinct rows; `duplicates` counts extra records of a row.
    """
    ids = [int(record["example"][0]) for record in predictions]
    dead = [int(record[row_of_failure][0]) for record in failed] if row_of_failure else []
    seen = Counter(ids + dead)
    return {
        "rows_in": rows_in,
        "rows_out": len(set(ids)),
        "dead_letters": len(set(dead)),
        "lost": len(set(range(rows_in)) - set(seen)),
        "duplicates": sum(count - 1 for count in seen.values()),
    }
