"""Prometheus metrics of one node, in a registry owned by the app (no process-global state).

With `RATELIMITER_WORKERS` > 1 each worker process has its own registry, so a scrape of
`/metrics` shows the worker that answered it; the node registry (`/v1/nodes`) carries the
summed decision counters of all workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)
HEARTBEAT_AGE = "ratelimiter_heartbeat_age_seconds"


class Metrics:
    """The metrics of one node; `render()` is what `/metrics` serves.

    `clock` reads positive seconds that never go back (time.monotonic).
    """

    def __init__(self, node_id: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        own = CollectorRegistry(auto_describe=True)
        labels = {"node": node_id}
        self.decisions = Counter(
            "ratelimiter_decisions",
            "Rate limit decisions by policy and result (allowed, denied, shadow_denied).",
            ["policy", "result"],
            registry=own,
        )
        self.check_latency = Histogram(
            "ratelimiter_check_latency_seconds",
            "Time to decide one /v1/check or one /v1/check/batch request, Redis included.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.redis_errors = Counter(
            "ratelimiter_redis_errors",
            "Redis calls that failed or missed the deadline, by operation.",
            ["operation"],
            registry=own,
        )
        self.failure_mode_decisions = Counter(
            "ratelimiter_failure_mode_decisions",
            "Decisions made without Redis, following the policy's failure_mode.",
            ["policy", "mode"],
            registry=own,
        )
        self.script_reloads = Counter(
            "ratelimiter_script_reloads",
            "Lua scripts reloaded after Redis answered NOSCRIPT.",
            registry=own,
        )
        self.policy_version = Gauge(
            "ratelimiter_policy_version",
            "Version of the policy set this node enforces.",
            registry=own,
        )
        # Holds the clock reading of the last heartbeat, which the scrape turns into an age
        # (`_Exposition`), so that the value is written when a heartbeat is, not computed by a
        # callback at scrape time.
        self._last_heartbeat = Gauge(
            HEARTBEAT_AGE,
            "Seconds since this node last wrote its heartbeat to Redis.",
            registry=own,
        )
        self.node_info = Gauge(
            "ratelimiter_node_info",
            "Constant 1, labelled with the node id.",
            list(labels),
            registry=own,
        )
        self.node_info.labels(**labels).set(1)
        self._clock = clock
        self.heartbeat_written()  # a node's heartbeat age counts from its start
        self.registry = CollectorRegistry()
        self.registry.register(_Exposition(own, clock))

    def heartbeat_written(self) -> None:
        self._last_heartbeat.set(self._clock())

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Exposition(Collector):
    """What a scrape shows: the metrics of `source`, with heartbeat instants turned into an age."""

    def __init__(self, source: Collector, clock: Callable[[], float]) -> None:
        self._source = source
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        for family in self._source.collect():
            yield _heartbeat_age(family, self._clock()) if family.name == HEARTBEAT_AGE else family


def _heartbeat_age(instants: Metric, now: float) -> Metric:
    age = GaugeMetricFamily(instants.name, instants.documentation)
    for sample in instants.samples:
        age.add_metric([], max(0.0, now - sample.value))
    return age
