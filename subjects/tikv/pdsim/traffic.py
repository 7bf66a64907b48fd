"""Synthetic TiKV gRPC traffic: cumulative `tikv_grpc_msg_duration_seconds` histograms per store.

Latencies are log-normal around a per-type median plus an injected extra delay (hot store). Bucket
counts come from the distribution's CDF, so counters are deterministic for a seed and cheap for any
request volume.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

# TiKV: exponential_buckets(0.0005, 2.0, 20)
GRPC_BUCKETS: tuple[float, ...] = tuple(0.0005 * 2**n for n in range(20))

# (median seconds, share of the store's requests) per gRPC message type.
GRPC_TYPES: dict[str, tuple[float, float]] = {
    "kv_get": (0.0008, 0.5),
    "kv_prewrite": (0.003, 0.2),
    "kv_commit": (0.0025, 0.2),
    "coprocessor": (0.005, 0.1),
}
_SIGMA = 0.6


def _lognormal_cdf(x: float, median: float) -> float:
    if x <= 0:
        return 0.0
    return 0.5 * (1.0 + math.erf(math.log(x / median) / (_SIGMA * math.sqrt(2.0))))


@dataclass
class Histogram:
    """One cumulative Prometheus histogram: counts per `le` bucket (+Inf = count), sum."""

    buckets: list[float] = field(default_factory=lambda: [0.0] * len(GRPC_BUCKETS))
    count: float = 0.0
    total: float = 0.0

    def add(self, n: int, median: float, extra: float) -> None:
        if n <= 0:
            return
        for i, le in enumerate(GRPC_BUCKETS):
            self.buckets[i] += round(n * _lognormal_cdf(le - extra, median))
        self.count += n
        self.total += n * (median * math.exp(_SIGMA**2 / 2) + extra)


class GrpcTraffic:
    """Cumulative per-(store id, type) histograms advanced by `advance`."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self.histograms: dict[tuple[int, str], Histogram] = {}

    def of_store(self, store_id: int) -> dict[str, Histogram]:
        """The store's histograms by message type (none before it served a request)."""
        return {kind: hist for (sid, kind), hist in self.histograms.items() if sid == store_id}

    def reset(self, store_id: int) -> None:
        """A restarted process starts its counters from zero."""
        for key in [k for k in self.histograms if k[0] == store_id]:
            del self.histograms[key]

    def advance(self, store_id: int, qps: float, extra_latency: float, dt: float) -> None:
        for kind, (median, share) in GRPC_TYPES.items():
            hist = self.histograms.setdefault((store_id, kind), Histogram())
            expected = qps * share * dt
            # Integer request counts; the random part keeps small rates from always rounding to 0.
            hist.add(int(expected + self._rng.random()), median, extra_latency)
