"""What one model version did in one role: predictions, errors, latency, agreement, accuracy.

`RoleStats` is combinable (`merged`), so the statistics of every worker and bundle add up
to one, as a Beam combine needs. Latency is kept as counts over fixed log-spaced buckets,
so percentiles combine exactly to the bucket's resolution (about 12% apart).
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Dict, Optional, Tuple

__all__ = ["LATENCY_BUCKETS_MS", "RoleStats"]

# Upper bounds of the latency buckets, 0.05 ms to ~20 min, 12% apart.
LATENCY_BUCKETS_MS: Tuple[float, ...] = tuple(0.05 * 1.12**i for i in range(150))


@dataclasses.dataclass(frozen=True)
class RoleStats:
    """The counts of one model version in one role; immutable, combined with `merged`.

    Attributes:
        predictions: Elements answered.
        errors: Elements dead-lettered at inference.
        latency_counts: Per latency bucket (LATENCY_BUCKETS_MS), how many elements' batch
            took that long; sparse: {bucket index: count}.
        compared: Elements whose prediction was compared with the stable model's.
        agreed: Of those, how many agreed.
        labelled: Elements whose label arrived.
        correct: Of those, how many were predicted right.
    """

    predictions: int = 0
    errors: int = 0
    latency_counts: Tuple[Tuple[int, int], ...] = ()
    compared: int = 0
    agreed: int = 0
    labelled: int = 0
    correct: int = 0

    @classmethod
    def of_batch(cls, predictions: int, errors: int, latency_ms: float) -> "RoleStats":
        """Returns the stats of one batch: every element took the batch's latency.

        Args:
            predictions: Elements answered.
            errors: Elements dead-lettered.
            latency_ms: The batch's inference time in milliseconds.
        """
        answered = predictions + errors
        last = len(LATENCY_BUCKETS_MS) - 1
        bucket = min(bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms), last)
        counts = ((bucket, answered),) if answered else ()
        return cls(predictions, errors, counts)

    def merged(self, other: "RoleStats") -> "RoleStats":
        """Returns the sum of these statistics and `other`'s."""
        counts: Dict[int, int] = dict(self.latency_counts)
        for bucket, count in other.latency_counts:
            counts[bucket] = counts.get(bucket, 0) + count
        return RoleStats(
            self.predictions + other.predictions,
            self.errors + other.errors,
            tuple(sorted(counts.items())),
            self.compared + other.compared,
            self.agreed + other.agreed,
            self.labelled + other.labelled,
            self.correct + other.correct,
        )

    @property
    def answered(self) -> int:
        """Elements this version handled: predictions plus errors."""
        return self.predictions + self.errors

    @property
    def error_rate(self) -> float:
        """The share of handled elements dead-lettered; 0 before any."""
        return self.errors / self.answered if self.answered else 0.0

    @property
    def agreement(self) -> Optional[float]:
        """The share of compared predictions equal to the stable model's; None if none."""
        return self.agreed / self.compared if self.compared else None

    @property
    def accuracy(self) -> Optional[float]:
        """The share of labelled predictions that were right; None if no label arrived."""
        return self.correct / self.labelled if self.labelled else None

    def latency_ms(self, quantile: float) -> Optional[float]:
        """Returns the latency under which `quantile` of the elements were answered.

        Args:
            quantile: In (0, 1], e.g. 0.99.

        Returns:
            The upper bound of the bucket holding that quantile; None before any element.
        """
        total = sum(count for _, count in self.latency_counts)
        if not total:
            return None
        rank = quantile * total
        seen = 0
        for bucket, count in self.latency_counts:
            seen += count
            if seen >= rank:
                return LATENCY_BUCKETS_MS[bucket]
        return LATENCY_BUCKETS_MS[self.latency_counts[-1][0]]

    def summary(self, quantile: float = 0.99) -> Dict[str, object]:
        """Returns the numbers a log line or a dead letter shows."""
        return {
            "predictions": self.predictions,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 4),
            f"latency_p{quantile * 100:g}_ms": self.latency_ms(quantile),
            "agreement": self.agreement,
            "labelled": self.labelled,
            "accuracy": self.accuracy,
        }
