"""The built-in invariant `target_up` on real dead endpoints (free loopback ports nothing listens
on), the shipped rate limiter config, and a clock the test moves: a whole-subject outage opens
exactly one ticket per target, naming the target and the error, and nothing is judged `ok`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from engine.config.validate import load_config
from engine.loop import Monitor
from engine.store import Store
from tests.ports import free_port
from tests.clock import Clock

ROOT = Path(__file__).resolve().parents[1]
DECLARED = 7  # the invariants configs/ratelimiter.yaml declares



def dead_subject_monitor(tmp_path: Path, clock: Clock) -> Monitor:
    ports = [free_port() for _ in range(4)]
    env = {
        **os.environ,
        **{f"RATELIMITER_URL_{i}": f"http://127.0.0.1:{port}" for i, port in enumerate(ports[:3], 1)},
        "REDIS_URL": f"redis://127.0.0.1:{ports[3]}/0",
        "OPCTL_STORE": str(tmp_path / "rl.db"),
    }
    loaded = load_config(ROOT / "configs" / "ratelimiter.yaml", env=env)
    return Monitor(loaded, store=Store(loaded.store_path), clock=clock)


def test_a_dead_subject_opens_one_ticket_per_target_within_down_after_plus_one_interval(tmp_path: Path) -> None:
    clock = Clock()
    monitor = dead_subject_monitor(tmp_path, clock)
    interval = monitor.config.interval
    down_after = monitor.config.down_after("redis")
    assert down_after == 3 * interval  # the default
    opened: list[dict[str, object]] = []
    reports = []

    async def run() -> None:
        started = clock.now
        while clock.now - started <= down_after + interval:
            report = await monitor.tick()
            reports.append(report)
            opened.extend(report.opened)
            clock.now += interval
        await monitor.aclose()

    asyncio.run(run())
    assert sorted(t["key"] for t in opened) == ["api", "nodes", "redis"]
    assert {t["invariant"] for t in opened} == {"target_up"}
    by_key = {t["key"]: t for t in opened}
    assert "target redis is down" in by_key["redis"]["message"]
    assert "connection refused" in by_key["redis"]["message"]
    assert "redis_ping" in by_key["redis"]["message"]
    assert "target nodes is down" in by_key["nodes"]["message"] and "connection refused" in by_key["nodes"]["message"]
    assert all(t["severity"] == "critical" for t in opened)
    # every tick: the 7 declared invariants are unknown (never ok), in the report and in metrics
    for report in reports:
        declared = {n: s for n, s in report.invariants.items() if n != "target_up"}
        assert len(declared) == DECLARED
        assert {s["state"] for s in declared.values()} == {"unknown"}
    registry = monitor.metrics.registry
    for inv in monitor.config.invariants:
        assert registry.get_sample_value("opctl_invariant_state", {"invariant": inv.name, "state": "unknown"}) == 1
        assert registry.get_sample_value("opctl_invariant_state", {"invariant": inv.name, "state": "ok"}) == 0
    assert registry.get_sample_value("opctl_invariant_state", {"invariant": "target_up", "state": "firing"}) == 1
    with Store(tmp_path / "rl.db") as store:
        assert sorted(t.entity_key for t in store.tickets() if t.status != "resolved") == ["api", "nodes", "redis"]


def test_target_up_ticket_stays_single_across_more_ticks_and_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    monitor = dead_subject_monitor(tmp_path, clock)
    interval = monitor.config.interval

    async def ticks(m: Monitor, count: int) -> int:
        opened = 0
        for _ in range(count):
            opened += len((await m.tick()).opened)
            clock.now += interval
        await m.aclose()
        return opened

    assert asyncio.run(ticks(monitor, 6)) == 3
    again = Monitor(monitor.loaded, store=Store(monitor.loaded.store_path), clock=clock)
    assert asyncio.run(ticks(again, 4)) == 0  # restored firing states: no second ticket per target


def test_the_entity_target_up_builds_is_the_one_validate_types_its_runbook_against(tmp_path: Path) -> None:
    """A target's runbook params are type-checked against celtypes.TARGET_UP_ITEM: the entity
    the engine builds must have exactly those fields, of those kinds."""
    from engine.config import celtypes as ct
    from engine.observe import ObservationResult
    from engine.target_health import TargetHealth

    clock = Clock()
    monitor = dead_subject_monitor(tmp_path, clock)
    health = TargetHealth(monitor.config)
    failed = {name: ObservationResult(name=name, ok=False, value=None, error="connection refused", duration_s=0.0, endpoint=None)
              for name in monitor.config.observations}
    evaluation = health.add_to(monitor.evaluator.evaluate(failed, {}, {}, clock.now), failed, {}, clock.now)
    items = [e.item for (invariant, _), e in evaluation.entities.items() if invariant == "target_up"]
    assert items and all(list(item) == ct.TARGET_UP_ITEM.names for item in items)
    kinds = {"target": str, "up": bool, "observations": list, "error": str, "down_after": str}
    assert all(isinstance(item[field], kinds[field]) for item in items for field in kinds)
