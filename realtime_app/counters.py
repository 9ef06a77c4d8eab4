"""Counts the live-update pieces add to as they work, and the histogram that times them; read
by stats. A leaf: it imports nothing of the application, so anything may count into it."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# Seconds; from well under a millisecond (loopback delivery) to timeouts.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """Counts in fixed buckets (Prometheus `le` semantics): one bisect per observation."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS_S):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, count at or below) pairs ending with +Inf, as Prometheus exposes them."""
        pairs, running = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            pairs.append((bound, float(running)))
        return pairs

    def quantile(self, q: float) -> float | None:
        """Estimated by linear interpolation inside the bucket, like PromQL's histogram_quantile."""
        total = self.count
        if not total:
            return None
        rank, running = q * total, 0
        for index, count in enumerate(self.counts):
            if running + count >= rank and count:
                if index == len(self.bounds):
                    return self.bounds[-1]
                lower = self.bounds[index - 1] if index else 0.0
                return lower + (self.bounds[index] - lower) * (rank - running) / count
            running += count
        return self.bounds[-1]

    def summary(self) -> dict[str, Any]:
        return {"count": self.count, "sum_s": round(self.sum, 6),
                **{name: rounded(self.quantile(q)) for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))}}


@dataclass
class RealtimeCounters:
    """Counts that the connections and outboxes add to; read by stats."""

    frames_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    conflated: int = 0
    slow_consumer_closes: int = 0
    rate_limited: int = 0
    oversized_frames: int = 0
    auth_failures: int = 0
    connections_refused: int = 0
    delivery_latency: Histogram = field(default_factory=Histogram)


def rounded(value: float | None) -> float | None:
    """Figures are given to six decimals (microseconds)."""
    return None if value is None else round(value, 6)
