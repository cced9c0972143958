"""Latency figures of the demo's load: percentiles overall and within time windows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LatencySummary", "Sample", "summarize"]

Sample = tuple[float, float]
"""One answered request: its start (``time.time()`` seconds) and how long it took."""


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles of the requests that started within a window, in milliseconds."""

    requests: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0

    def render(self) -> str:
        if not self.requests:
            return "no requests"
        return (
            f"{self.requests:>7,} requests  p50 {self.p50_ms:7.2f}  p99 {self.p99_ms:7.2f}"
            f"  max {self.max_ms:8.2f} ms"
        )


def _rank(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values."""
    rank = math.ceil(round(fraction * len(ordered), 9))  # rounded: 0.29 * 100 is 29.000...04
    index = max(0, min(len(ordered) - 1, rank - 1))
    return ordered[index]


def summarize(
    samples: Sequence[Sample], since: float = float("-inf"), until: float = float("inf")
) -> LatencySummary:
    """The requests that started in ``[since, until]``, summarised."""
    durations = sorted(seconds for start, seconds in samples if since <= start <= until)
    if not durations:
        return LatencySummary()
    return LatencySummary(
        requests=len(durations),
        p50_ms=round(_rank(durations, 0.50) * 1000, 3),
        p99_ms=round(_rank(durations, 0.99) * 1000, 3),
        max_ms=round(durations[-1] * 1000, 3),
    )
