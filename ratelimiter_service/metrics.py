"""Prometheus metrics of one node.

One process (`RATELIMITER_WORKERS=1`, and the apps tests build in-process): the metrics live in
a registry owned by the app, so two apps in one process share nothing, and nothing touches disk.

Several worker processes: each worker writes its samples to files in the directory `__main__`
made for the run (prometheus_client's multiprocess mode, see `metrics_dir`), and a scrape
answered by any worker merges the files of all of them, so `/metrics` shows the whole node.
Counters and histograms are summed over the workers, dead ones included (their decisions
happened); each gauge says below how its workers' values are merged. Names, labels and help
texts are the same either way; only the `_created` samples of counters and histograms are
missing from the merged exposition.
"""

from __future__ import annotations

import contextlib
import glob
import os
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from ratelimiter_service.metrics_dir import shared_metrics_dir
from ratelimiter_service.redis_client import ERROR_KINDS, error_kind

# Every label value known at start is exported at 0 before its first event, so Prometheus'
# rate() and increase() see that event (a series born at 1 looks like no change).
DECISION_RESULTS = ("allowed", "denied", "shadow_denied")
FAILURE_MODES = ("open", "closed")
REDIS_OPERATIONS = ("check", "check_batch", "ready", "policy_refresh", "heartbeat", "over_limit_index")
CHECK_ENDPOINTS = ("check", "batch", "grpc")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)
HEARTBEAT_AGE = "ratelimiter_heartbeat_age_seconds"


class Metrics:
    """The metrics of one node; `render()` is what `/metrics` serves.

    `clock` reads positive seconds that never go back, on a clock all processes of the machine
    share (time.monotonic is CLOCK_MONOTONIC on Linux).
    """

    def __init__(self, node_id: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        # With shared files the metrics are written there and read back by the scrape: registered
        # where the scrape collects as well, they would be exported twice.
        shared_dir = shared_metrics_dir()
        own: CollectorRegistry | None
        source: Collector
        if shared_dir:
            own, source = None, WorkerFiles(shared_dir)
        else:
            own = source = CollectorRegistry(auto_describe=True)
        labels = {"node": node_id}
        self.decisions = Counter(
            "ratelimiter_decisions",
            "Rate limit decisions by policy and result (allowed, denied, shadow_denied).",
            ["policy", "result"],
            registry=own,
        )
        self.check_latency = Histogram(
            "ratelimiter_check_latency_seconds",
            "Time to decide one /v1/check or /v1/check/batch request, or one gRPC ShouldRateLimit, Redis included.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.redis_errors = Counter(
            "ratelimiter_redis_errors",
            "Redis calls that failed or missed the deadline, by operation and kind: unsent (never "
            "reached Redis, after its one retry), timeout (sent, no reply in time: may have run, "
            "never retried), error (the connection broke after sending, or Redis answered an error).",
            ["operation", "kind"],
            registry=own,
        )
        self.redis_retries = Counter(
            "ratelimiter_redis_retries",
            "Decision calls sent again because the first attempt certainly never reached Redis.",
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
        # A node with one worker still on an old version serves old policies to part of its
        # traffic: the lowest version of the live workers is the one that matters.
        self.policy_version = Gauge(
            "ratelimiter_policy_version",
            "Version of the policy set this node enforces (of several worker processes, the lowest).",
            multiprocess_mode="livemin",
            registry=own,
        )
        # Holds the clock reading of the last heartbeat, which the scrape turns into an age
        # (`_Exposition`): a worker whose event loop is stuck cannot update an age of its own,
        # but its last heartbeat grows old by itself. 'liveall' keeps one sample per worker.
        self._last_heartbeat = Gauge(
            HEARTBEAT_AGE,
            "Seconds since this node last wrote its heartbeat to Redis (of several worker "
            "processes, the one whose last heartbeat is oldest).",
            multiprocess_mode="liveall",
            registry=own,
        )
        self.node_info = Gauge(
            "ratelimiter_node_info",
            "Constant 1, labelled with the node id.",
            list(labels),
            multiprocess_mode="max",  # the same 1 in every worker
            registry=own,
        )
        self.node_info.labels(**labels).set(1)
        for operation in REDIS_OPERATIONS:
            for kind in ERROR_KINDS:
                self.redis_errors.labels(operation, kind)
        for endpoint in CHECK_ENDPOINTS:
            self.check_latency.labels(endpoint)
        self._clock = clock
        self.heartbeat_written()  # a node's heartbeat age counts from its start
        self.registry = CollectorRegistry()
        self.registry.register(_Exposition(source, clock))

    def know_policies(self, names: Iterable[str]) -> None:
        """Export the per-policy counters of these policies at 0 (a no-op for known ones)."""
        for name in names:
            for result in DECISION_RESULTS:
                self.decisions.labels(name, result)
            for mode in FAILURE_MODES:
                self.failure_mode_decisions.labels(name, mode)

    def redis_error(self, operation: str, exc: BaseException) -> None:
        self.redis_errors.labels(operation, error_kind(exc)).inc()

    def heartbeat_written(self) -> None:
        self._last_heartbeat.set(self._clock())

    def render(self) -> bytes:
        return generate_latest(self.registry)


class WorkerFiles(Collector):
    """The metric files of every worker process of the node, merged.

    prometheus_client expects the supervisor to call `mark_process_dead` when a worker exits, so
    that live-mode gauges forget it; uvicorn's supervisor has no hook for that (and restarts a
    worker that dies), so each scrape first forgets the workers that no longer run.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._files = MultiProcessCollector(None, path)

    def collect(self) -> Iterable[Metric]:
        self._forget_dead_workers()
        return self._files.collect()

    def _forget_dead_workers(self) -> None:
        for live_file in glob.glob(os.path.join(self._path, "gauge_live*_*.db")):
            pid = int(live_file.rsplit("_", 1)[1].removesuffix(".db"))
            if not _running(pid):
                with contextlib.suppress(FileNotFoundError):  # another worker's scrape was first
                    mark_process_dead(pid, self._path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # the latter: another user's process has the pid now
        return False
    return True


class _Exposition(Collector):
    """What a scrape shows: the metrics of `source`, with heartbeat instants turned into an age."""

    def __init__(self, source: Collector, clock: Callable[[], float]) -> None:
        self._source = source
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        for family in self._source.collect():
            yield _oldest_heartbeat_age(family, self._clock()) if family.name == HEARTBEAT_AGE else family


def _oldest_heartbeat_age(instants: Metric, now: float) -> Metric:
    # The scraping worker ages the other workers' instants with its own clock (one clock for all,
    # see Metrics). A worker's sample reads 0.0 between the creation of its file entry and its
    # first write: not a heartbeat.
    written = [sample.value for sample in instants.samples if sample.value > 0]
    age = GaugeMetricFamily(instants.name, instants.documentation)
    if written:
        age.add_metric([], max(0.0, now - min(written)))
    return age
