"""Prometheus metrics: one registry per app in one process."""

from __future__ import annotations

from ratelimiter_service.metrics import Metrics


def test_apps_in_one_process_keep_their_own_metrics_in_memory() -> None:
    first, second = Metrics("a"), Metrics("b")
    first.decisions.labels("p", "allowed").inc()
    assert b'ratelimiter_decisions_total{policy="p",result="allowed"} 1.0' in first.render()
    assert b"ratelimiter_decisions_total{" not in second.render()
    assert b'ratelimiter_node_info{node="b"} 1.0' in second.render()


def test_heartbeat_age_is_the_time_since_the_last_heartbeat() -> None:
    now = [100.0]
    metrics = Metrics("a", clock=lambda: now[0])
    now[0] = 102.5
    assert b"ratelimiter_heartbeat_age_seconds 2.5" in metrics.render()  # counted from the start
    metrics.heartbeat_written()
    now[0] = 103.0
    assert b"ratelimiter_heartbeat_age_seconds 0.5" in metrics.render()
