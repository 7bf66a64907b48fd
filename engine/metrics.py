"""opctl's own Prometheus metrics, in a registry of its own (no process-global state)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from engine.evaluate import COUNTED as STATES  # ok, pending, firing, unknown, error

if TYPE_CHECKING:
    from engine.evaluate import Evaluation
    from engine.loop import TickReport


class EngineMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.ticks = Counter("opctl_ticks", "Ticks run.", registry=self.registry)
        self.tick_duration = Histogram(
            "opctl_tick_duration_seconds",
            "Time to observe, evaluate and record one tick.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.observation_errors = Counter(
            "opctl_observation_errors", "Observations that failed, by name.", ["observation"], registry=self.registry
        )
        self.invariant_entities = Gauge(
            "opctl_invariant_entities",
            "Entities per invariant and state this tick (ok, pending, firing; unknown: an observation it reads "
            "failed; error: its evaluation failed).", ["invariant", "state"], registry=self.registry
        )
        self.invariant_health = Gauge(
            "opctl_invariant_healthy", "1 when the invariant evaluated cleanly, 0 on errors.", ["invariant"], registry=self.registry
        )
        self.invariant_state = Gauge(
            "opctl_invariant_state",
            "1 for the state the invariant is in this tick (firing, pending, unknown: its inputs are missing, "
            "error, ok), 0 for the others.", ["invariant", "state"], registry=self.registry
        )
        self.open_tickets = Gauge("opctl_open_tickets", "Tickets open now.", registry=self.registry)
        self.tickets_opened = Counter("opctl_tickets_opened", "Tickets opened.", ["invariant"], registry=self.registry)
        self.tickets_resolved = Counter("opctl_tickets_resolved", "Tickets resolved.", ["invariant"], registry=self.registry)

    def know(self, *, observations: Iterable[str], invariants: Iterable[str]) -> None:
        """Export every labelled counter of these names at 0 before its first event, so that
        Prometheus' rate() and increase() see that event (a series born at 1 shows no change)."""
        for name in observations:
            self.observation_errors.labels(observation=name)
        for name in invariants:
            self.tickets_opened.labels(invariant=name)
            self.tickets_resolved.labels(invariant=name)

    def record_tick(self, report: TickReport, evaluation: Evaluation) -> None:
        self.ticks.inc()
        self.tick_duration.observe(report.duration_s)
        for name, summary in report.observations.items():
            if not summary["ok"]:
                self.observation_errors.labels(observation=name).inc()
        for name, rep in evaluation.reports.items():
            for state in STATES:
                self.invariant_entities.labels(invariant=name, state=state).set(rep.counts.get(state, 0))
            self.invariant_health.labels(invariant=name).set(1 if rep.health == "ok" else 0)
            for state in STATES:
                self.invariant_state.labels(invariant=name, state=state).set(1 if rep.state == state else 0)
        self.open_tickets.set(report.open_tickets)
        for ticket in report.opened:
            self.tickets_opened.labels(invariant=ticket["invariant"]).inc()
        for ticket in report.resolved:
            self.tickets_resolved.labels(invariant=ticket["invariant"]).inc()

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Expose /metrics on host:port in a background thread."""
        start_http_server(port, addr=host, registry=self.registry)
