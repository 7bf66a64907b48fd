"""Prometheus metrics of one node, in a registry owned by the app (no process-global state).

With `RATELIMITER_WORKERS` > 1 each worker process has its own registry, so a scrape of
`/metrics` shows the worker that answered it; the node registry (`/v1/nodes`) carries the
summed decision counters of all workers.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)


class Metrics:
    def __init__(self, node_id: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"node": node_id}
        self.decisions = Counter(
            "ratelimiter_decisions",
            "Rate limit decisions by policy and result (allowed, denied, shadow_denied).",
            ["policy", "result"],
            registry=self.registry,
        )
        self.check_latency = Histogram(
            "ratelimiter_check_latency_seconds",
            "Time to decide one /v1/check or one /v1/check/batch request, Redis included.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "ratelimiter_redis_errors",
            "Redis calls that failed or missed the deadline, by operation.",
            ["operation"],
            registry=self.registry,
        )
        self.failure_mode_decisions = Counter(
            "ratelimiter_failure_mode_decisions",
            "Decisions made without Redis, following the policy's failure_mode.",
            ["policy", "mode"],
            registry=self.registry,
        )
        self.script_reloads = Counter(
            "ratelimiter_script_reloads",
            "Lua scripts reloaded after Redis answered NOSCRIPT.",
            registry=self.registry,
        )
        self.policy_version = Gauge(
            "ratelimiter_policy_version",
            "Version of the policy set this node enforces.",
            registry=self.registry,
        )
        self.heartbeat_age = Gauge(
            "ratelimiter_heartbeat_age_seconds",
            "Seconds since this node last wrote its heartbeat to Redis.",
            registry=self.registry,
        )
        self.node_info = Gauge(
            "ratelimiter_node_info", "Constant 1, labelled with the node id.", list(labels), registry=self.registry
        )
        self.node_info.labels(**labels).set(1)

    def track_heartbeat_age(self, age_s: Callable[[], float]) -> None:
        self.heartbeat_age.set_function(age_s)

    def track_policy_version(self, version: Callable[[], float]) -> None:
        self.policy_version.set_function(version)

    def render(self) -> bytes:
        return generate_latest(self.registry)
