"""The invariant state machine (`advance`) and the evaluator, with time passed in."""

from __future__ import annotations

from typing import Any

import pytest

from engine.config.models import Config, Invariant
from engine.evaluate import OK, EntityState, Evaluation, Evaluator, StateMap, advance
from engine.observe import ObservationResult

# --------------------------------------------------------------------------- advance, table-driven


def make_inv(**fields: Any) -> Invariant:
    return Invariant.model_validate({"name": "inv", "expr": "true", **fields})


# Each step: (time, sample, resolve_ok, expected status after, expected transition kind or None)
Step = tuple[float, str, bool, str, "str | None"]

SCENARIOS: list[tuple[str, dict[str, Any], list[Step]]] = [
    (
        "for 0 fires at once and resolves on the first healthy sample",
        {},
        [(0, "violated", True, "firing", "firing"), (10, "violated", True, "firing", None), (20, "healthy", True, "ok", "resolved")],
    ),
    (
        "pending until for has elapsed, then firing",
        {"for": "60s"},
        [
            (0, "violated", True, "pending", "pending"),
            (30, "violated", True, "pending", None),
            (59.9, "violated", True, "pending", None),
            (60, "violated", True, "firing", "firing"),
            (70, "healthy", True, "ok", "resolved"),
        ],
    ),
    (
        "a pending violation that clears never fires",
        {"for": "60s"},
        [(0, "violated", True, "pending", "pending"), (30, "healthy", True, "ok", "cleared"), (90, "violated", True, "pending", "pending")],
    ),
    (
        "keep_firing_for: stays firing until healthy for long enough",
        {"keep_firing_for": "2m"},
        [
            (0, "violated", True, "firing", "firing"),
            (10, "healthy", True, "firing", None),
            (60, "healthy", True, "firing", None),
            (129, "healthy", True, "firing", None),
            (130, "healthy", True, "ok", "resolved"),
        ],
    ),
    (
        "keep_firing_for: a violation during the countdown restarts it",
        {"keep_firing_for": "2m"},
        [
            (0, "violated", True, "firing", "firing"),
            (10, "healthy", True, "firing", None),
            (50, "violated", True, "firing", None),
            (60, "healthy", True, "firing", None),
            (150, "healthy", True, "firing", None),
            (180, "healthy", True, "ok", "resolved"),
        ],
    ),
    (
        "resolve_when: healthy but not recovered keeps firing (hysteresis)",
        {"resolve_when": "true"},
        [
            (0, "violated", True, "firing", "firing"),
            (10, "healthy", False, "firing", None),
            (20, "healthy", False, "firing", None),
            (30, "healthy", True, "ok", "resolved"),
        ],
    ),
    (
        "resolve_when with keep_firing_for: a not-recovered sample cancels the countdown",
        {"resolve_when": "true", "keep_firing_for": "30s"},
        [
            (0, "violated", True, "firing", "firing"),
            (10, "healthy", True, "firing", None),
            (20, "healthy", False, "firing", None),
            (45, "healthy", True, "firing", None),
            (75, "healthy", True, "ok", "resolved"),
        ],
    ),
    (
        "on_error keep: an error does not advance a pending timer",
        {"for": "60s"},
        [
            (0, "violated", True, "pending", "pending"),
            (100, "error", True, "pending", None),
            (110, "violated", True, "firing", "firing"),
        ],
    ),
    (
        "on_error keep: an error neither resolves nor progresses the countdown",
        {"keep_firing_for": "60s"},
        [
            (0, "violated", True, "firing", "firing"),
            (10, "healthy", True, "firing", None),
            (80, "error", True, "firing", None),
            (200, "error", True, "firing", None),
            (210, "healthy", True, "ok", "resolved"),
        ],
    ),
    (
        "on_error keep: an error on an ok entity keeps it ok",
        {},
        [(0, "error", True, "ok", None), (10, "healthy", True, "ok", None)],
    ),
    (
        "on_error firing: an error counts as a violation",
        {"on_error": "firing", "for": "20s"},
        [(0, "error", True, "pending", "pending"), (10, "violated", True, "pending", None), (20, "error", True, "firing", "firing")],
    ),
    (
        "on_error ok: an error counts as healthy, even against resolve_when",
        {"on_error": "ok", "resolve_when": "true"},
        [(0, "violated", True, "firing", "firing"), (10, "error", False, "ok", "resolved")],
    ),
]


@pytest.mark.parametrize("fields,steps", [(f, s) for _, f, s in SCENARIOS], ids=[n for n, _, _ in SCENARIOS])
def test_advance_scenario(fields: dict[str, Any], steps: list[Step]) -> None:
    inv = make_inv(**fields)
    state: EntityState | None = None
    for at, sample, resolve_ok, want_status, want_kind in steps:
        error = "boom" if sample == "error" else None
        state, transition = advance(state, sample, at, inv, resolve_ok=resolve_ok, error=error, key="k")  # type: ignore[arg-type]
        assert state.status == want_status, f"at t={at} after {sample}"
        assert (transition.kind if transition else None) == want_kind, f"at t={at} after {sample}"
        if transition is not None:
            assert (transition.invariant, transition.key, transition.at) == ("inv", "k", at)
            assert transition.after == state.status


def test_advance_keeps_timestamps() -> None:
    inv = make_inv(**{"for": "1m", "keep_firing_for": "1m"})
    s, _ = advance(None, "violated", 100, inv)
    assert (s.active_since, s.fired_at, s.last_change) == (100, None, 100)
    s, _ = advance(s, "violated", 170, inv)
    assert (s.status, s.active_since, s.fired_at, s.last_change) == ("firing", 100, 170, 170)
    s, _ = advance(s, "healthy", 180, inv)
    assert (s.status, s.cleared_since, s.last_change) == ("firing", 180, 170)
    s, t = advance(s, "healthy", 240, inv)
    assert t is not None and (t.before, t.after) == ("firing", "ok")
    assert s == EntityState("ok", last_change=240)


def test_advance_records_and_clears_the_last_error() -> None:
    inv = make_inv()
    s, _ = advance(None, "violated", 0, inv)
    s, _ = advance(s, "error", 10, inv, error="observation 'x' failed: timeout after 2s")
    assert (s.status, s.last_error) == ("firing", "observation 'x' failed: timeout after 2s")
    s, _ = advance(s, "violated", 20, inv)
    assert (s.status, s.last_error) == ("firing", None)


def test_advance_without_change_returns_the_same_state() -> None:
    inv = make_inv(**{"for": "1m"})
    s, _ = advance(None, "violated", 0, inv)
    again, transition = advance(s, "violated", 10, inv)
    assert again is s and transition is None
    assert advance(OK, "healthy", 5, inv) == (OK, None)


# --------------------------------------------------------------------------- the evaluator

TARGETS = {"api": {"url": "http://127.0.0.1:9"}}


def make_config(*invariants: dict[str, Any], observations: tuple[str, ...] = ("nodes", "stats")) -> Config:
    return Config.model_validate(
        {
            "version": 1,
            "subject": {"name": "test"},
            "targets": TARGETS,
            "observations": {name: {"http": {"target": "api", "path": f"/{name}"}} for name in observations},
            "invariants": list(invariants),
        }
    )


def ok(name: str, value: Any) -> ObservationResult:
    return ObservationResult(name, True, value, None, 0.01, "http://127.0.0.1:9")


def failed(name: str, reason: str = "connection refused to http://127.0.0.1:9/nodes") -> ObservationResult:
    return ObservationResult(name, False, None, reason, 0.01, None)


class Ticker:
    """Drives an Evaluator tick by tick, carrying states like the engine's loop."""

    def __init__(self, config: Config) -> None:
        self.evaluator = Evaluator(config)
        self.states: Any = {}
        self.last: Evaluation | None = None

    def tick(self, now: float, *results: ObservationResult, **named: ObservationResult) -> Evaluation:
        observations = {r.name: r for r in results} | named
        self.last = self.evaluator.evaluate(observations, {}, self.states, now)
        self.states = self.last.states
        return self.last

    def status(self, invariant: str, key: str) -> str | None:
        state = self.states.get((invariant, key))
        return None if state is None else state.status


NODE_UP = {"name": "node_up", "for_each": "nodes", "key": "item.id", "expr": 'item.state == "Up"', "for": "30s"}


def nodes(*states: tuple[Any, str]) -> ObservationResult:
    return ok("nodes", [{"id": key, "state": state} for key, state in states])


def test_per_entity_lifecycle_with_time_passed_in() -> None:
    t = Ticker(make_config(NODE_UP))
    e = t.tick(0, nodes((1, "Up"), (2, "Up")))
    assert e.transitions == [] and e.reports["node_up"].counts == {"ok": 2, "pending": 0, "firing": 0, "unknown": 0, "error": 0}
    e = t.tick(10, nodes((1, "Up"), (2, "Down")))
    assert [(x.key, x.kind) for x in e.transitions] == [("2", "pending")]
    assert e.entities[("node_up", "2")].item == {"id": 2, "state": "Down"}
    e = t.tick(39, nodes((1, "Up"), (2, "Down")))
    assert e.transitions == [] and t.status("node_up", "2") == "pending"
    e = t.tick(40, nodes((1, "Up"), (2, "Down")))
    assert [(x.key, x.kind, x.at) for x in e.transitions] == [("2", "firing", 40)]
    assert e.reports["node_up"].counts == {"ok": 1, "pending": 0, "firing": 1, "unknown": 0, "error": 0}
    e = t.tick(50, nodes((1, "Up"), (2, "Up")))
    assert [(x.key, x.kind) for x in e.transitions] == [("2", "resolved")]
    assert t.status("node_up", "1") == "ok" and t.status("node_up", "2") == "ok"


def test_entity_that_disappears_is_a_healthy_sample() -> None:
    t = Ticker(make_config({**NODE_UP, "for": "0s"}, {**NODE_UP, "name": "slow", "for": "1m"}))
    t.tick(0, nodes((1, "Down"), (2, "Up")))
    assert t.status("node_up", "1") == "firing" and t.status("slow", "1") == "pending"
    e = t.tick(10, nodes((2, "Up")))
    assert sorted((x.invariant, x.key, x.kind) for x in e.transitions) == [("node_up", "1", "resolved"), ("slow", "1", "cleared")]
    assert e.entities[("node_up", "1")].item is None
    e = t.tick(20, nodes((2, "Up")))
    assert ("node_up", "1") not in e.states and len(e.states) == 2  # forgotten once settled


def test_entity_that_disappears_keeps_firing_for() -> None:
    t = Ticker(make_config({**NODE_UP, "for": "0s", "keep_firing_for": "1m"}))
    t.tick(0, nodes((1, "Down")))
    assert t.tick(30, nodes()).transitions == [] and t.status("node_up", "1") == "firing"
    assert t.tick(89, nodes()).transitions == []  # the countdown started at 30
    assert [x.kind for x in t.tick(90, nodes()).transitions] == ["resolved"]


def test_cel_error_on_one_item_does_not_stop_the_others() -> None:
    t = Ticker(make_config({"name": "space", "for_each": "nodes", "key": "item.id", "expr": "item.free > 10"}))
    e = t.tick(0, ok("nodes", [{"id": "a", "free": 5}, {"id": "b"}, {"id": "c", "free": 50}, {"id": "d", "free": "lots"}]))
    assert [(x.key, x.kind) for x in e.transitions] == [("a", "firing")]
    report = e.reports["space"]
    assert report.health == "err"
    assert "'b'" in (report.error or "") and "no key 'free'" in (report.error or "")
    assert "1 more" in (report.error or "")
    assert t.states[("space", "b")].last_error is not None and t.states[("space", "b")].status == "ok"
    assert t.status("space", "c") == "ok"


def test_cel_error_follows_on_error_policy() -> None:
    t = Ticker(make_config({"name": "space", "for_each": "nodes", "key": "item.id", "expr": "item.free > 10", "on_error": "firing"}))
    e = t.tick(0, ok("nodes", [{"id": "b"}]))
    assert [(x.key, x.kind) for x in e.transitions] == [("b", "firing")]
    assert "no key 'free'" in (t.states[("space", "b")].last_error or "")


def test_expr_that_is_not_a_bool_is_an_error() -> None:
    t = Ticker(make_config({"name": "count", "expr": "stats.count"}))
    e = t.tick(0, ok("stats", {"count": 3}))
    assert e.reports["count"].health == "err" and "int, not a bool" in (e.reports["count"].error or "")
    assert e.reports["count"].counts["error"] == 1 and e.reports["count"].counts["ok"] == 0
    assert "int, not a bool" in e.reports["count"].errors[""] and e.reports["count"].unknown == {}


def test_failed_observation_keeps_firing_under_keep() -> None:
    t = Ticker(make_config(NODE_UP | {"for": "0s"}))
    t.tick(0, nodes((1, "Down"), (2, "Up")))
    e = t.tick(10, nodes=failed("nodes"))
    assert e.transitions == []
    assert t.status("node_up", "1") == "firing" and t.status("node_up", "2") == "ok"
    assert e.reports["node_up"].health == "err"
    assert "connection refused" in (e.reports["node_up"].error or "")
    assert "connection refused" in (t.states[("node_up", "1")].last_error or "")
    # both entities are unknown this tick (nothing to judge); entity 1 holds its firing status
    assert e.reports["node_up"].counts == {"ok": 0, "pending": 0, "firing": 0, "unknown": 2, "error": 0}
    assert set(e.reports["node_up"].unknown) == {"1", "2"} and e.reports["node_up"].errors == {}
    assert "connection refused" in e.reports["node_up"].unknown["1"]
    e = t.tick(20, nodes((1, "Up"), (2, "Up")))
    assert [x.kind for x in e.transitions] == ["resolved"]


def test_failed_observation_under_firing_and_ok_policies() -> None:
    cluster = {"name": "reachable", "expr": "stats.up", "on_error": "firing"}
    per_entity = NODE_UP | {"for": "0s", "on_error": "ok"}
    t = Ticker(make_config(cluster, per_entity))
    t.tick(0, nodes((1, "Down"), (2, "Up")), stats=ok("stats", {"up": True}))
    e = t.tick(10, nodes=failed("nodes"), stats=failed("stats", "timeout after 2s"))
    kinds = sorted((x.invariant, x.key, x.kind) for x in e.transitions)
    assert kinds == [("node_up", "1", "resolved"), ("reachable", "", "firing")]
    assert "timeout after 2s" in (t.states[("reachable", "")].last_error or "")


def test_observation_not_made_this_tick_is_an_error() -> None:
    t = Ticker(make_config({"name": "reachable", "expr": "stats.up", "on_error": "firing"}))
    e = t.tick(0)
    assert "was not made this tick" in (e.reports["reachable"].error or "")
    assert t.status("reachable", "") == "firing"


def test_only_referenced_observations_matter() -> None:
    t = Ticker(make_config({"name": "reachable", "expr": "stats.up", "on_error": "firing"}))
    e = t.tick(0, stats=ok("stats", {"up": True}), nodes=failed("nodes"))
    assert e.reports["reachable"].health == "ok" and t.status("reachable", "") == "ok"


def test_cluster_wide_invariant_uses_the_empty_key_and_resolve_when() -> None:
    inv = {"name": "mem", "expr": "stats.used < 90", "resolve_when": "stats.used < 80"}
    t = Ticker(make_config(inv))
    assert [x.key for x in t.tick(0, stats=ok("stats", {"used": 95})).transitions] == [""]
    assert t.tick(10, stats=ok("stats", {"used": 85})).transitions == []  # healthy, not recovered
    assert [x.kind for x in t.tick(20, stats=ok("stats", {"used": 79})).transitions] == ["resolved"]


def test_per_entity_resolve_when() -> None:
    inv = {"name": "mem", "for_each": "nodes", "key": "item.id", "expr": "item.used < 90", "resolve_when": "item.used < 80"}
    t = Ticker(make_config(inv))
    t.tick(0, ok("nodes", [{"id": "a", "used": 95}, {"id": "b", "used": 10}]))
    assert t.tick(10, ok("nodes", [{"id": "a", "used": 85}, {"id": "b", "used": 10}])).transitions == []
    assert t.status("mem", "a") == "firing"
    e = t.tick(20, ok("nodes", [{"id": "a", "used": 70}, {"id": "b", "used": 10}]))
    assert [(x.key, x.kind) for x in e.transitions] == [("a", "resolved")]


def test_resolve_when_error_is_an_error_sample() -> None:
    inv = {"name": "mem", "expr": "stats.used < 90", "resolve_when": "stats.nope < 80"}
    t = Ticker(make_config(inv))
    t.tick(0, stats=ok("stats", {"used": 95}))
    e = t.tick(10, stats=ok("stats", {"used": 10}))
    assert e.transitions == [] and "resolve_when failed" in (e.reports["mem"].error or "")


def test_for_each_that_is_not_a_list_is_an_error_for_known_entities() -> None:
    t = Ticker(make_config(NODE_UP | {"for": "0s"}))
    t.tick(0, nodes((1, "Down")))
    e = t.tick(10, nodes=ok("nodes", {"oops": 1}))
    assert e.transitions == [] and t.status("node_up", "1") == "firing"
    assert "for_each gave a map, not a list" in (e.reports["node_up"].error or "")


def test_for_each_expression_with_a_filter() -> None:
    inv = NODE_UP | {"for_each": 'nodes.filter(n, n.id != 3)', "for": "0s"}
    t = Ticker(make_config(inv))
    e = t.tick(0, nodes((1, "Up"), (3, "Down")))
    assert e.transitions == [] and len(e.states) == 1


def test_key_failure_makes_missing_entities_errors_not_recoveries() -> None:
    t = Ticker(make_config(NODE_UP | {"for": "0s", "key": "item.name"}))
    t.tick(0, ok("nodes", [{"name": "a", "state": "Down"}]))
    e = t.tick(10, ok("nodes", [{"id": 1, "state": "Up"}]))  # 'a' may be the item without a name
    assert e.transitions == [] and t.status("node_up", "a") == "firing"
    assert "key failed" in (e.reports["node_up"].error or "")


def test_duplicate_keys_are_reported() -> None:
    t = Ticker(make_config(NODE_UP | {"for": "0s"}))
    e = t.tick(0, nodes((1, "Up"), (1, "Down")))
    assert e.transitions == [] and "two items have the key '1'" in (e.reports["node_up"].error or "")


def test_keys_are_text() -> None:
    t = Ticker(make_config(NODE_UP | {"for": "0s"}))
    t.tick(0, ok("nodes", [{"id": 7, "state": "Down"}, {"id": 1.5, "state": "Down"}, {"id": "x", "state": "Down"}]))
    assert {k for (_, k) in t.states} == {"7", "1.5", "x"}
    e = t.tick(1, ok("nodes", [{"id": True, "state": "Up"}]))
    assert "key gave a bool" in (e.reports["node_up"].error or "")


def test_expressions_see_now_and_prev() -> None:
    inv = {"name": "fresh", "expr": "now - stats.at < 60.0 && (!has(prev.stats) || prev.stats.at <= stats.at)"}
    evaluator = Evaluator(make_config(inv))
    e = evaluator.evaluate({"stats": ok("stats", {"at": 100.0})}, {}, {}, 120.0)
    assert e.reports["fresh"].health == "ok" and e.states[("fresh", "")].status == "ok"
    e = evaluator.evaluate({"stats": ok("stats", {"at": 100.0})}, {"stats": {"at": 150.0}}, e.states, 130.0)
    assert e.states[("fresh", "")].status == "firing"


def test_states_from_a_plain_dict_are_continued() -> None:
    """After a restart the loop passes the store's states (a plain dict) to evaluate()."""
    evaluator = Evaluator(make_config(NODE_UP))
    restored = {("node_up", "2"): EntityState("pending", active_since=0.0, last_change=0.0)}
    e = evaluator.evaluate({"nodes": nodes((1, "Up"), (2, "Down"))}, {}, restored, 30.0)
    assert [(x.key, x.kind) for x in e.transitions] == [("2", "firing")]


def test_state_map_behaves_as_a_read_only_mapping() -> None:
    firing = EntityState("firing", active_since=1.0, fired_at=1.0, last_change=1.0)
    states = StateMap({"a": ["1", "2"], "b": [""]}, {("a", "2"): firing})
    assert len(states) == 3
    assert dict(states) == {("a", "1"): OK, ("a", "2"): firing, ("b", ""): OK}
    assert ("a", "1") in states and ("a", "3") not in states and ("c", "1") not in states
    assert states.get(("a", "3")) is None
    assert sorted(states.keys_of("a")) == ["1", "2"]
    with pytest.raises(KeyError):
        states[("a", "3")]


def test_invariant_removed_from_config_is_dropped() -> None:
    evaluator = Evaluator(make_config(NODE_UP))
    old = {("gone", "x"): EntityState("firing", active_since=0.0, fired_at=0.0, last_change=0.0)}
    e = evaluator.evaluate({"nodes": nodes((1, "Up"))}, {}, old, 10.0)
    assert ("gone", "x") not in e.states and e.transitions == []


def test_unknown_and_error_are_counted_apart_by_entity() -> None:
    # one entity's expression fails (error), while another invariant's observation fails (unknown)
    per_entity = {"name": "space", "for_each": "nodes", "key": "item.id", "expr": "item.free > 10"}
    t = Ticker(make_config(per_entity, {"name": "reachable", "expr": "stats.up"}))
    e = t.tick(0, ok("nodes", [{"id": "a", "free": 50}, {"id": "b"}]), failed("stats"))
    space, reachable = e.reports["space"], e.reports["reachable"]
    assert space.counts == {"ok": 1, "pending": 0, "firing": 0, "unknown": 0, "error": 1}
    assert list(space.errors) == ["b"] and "no key 'free'" in space.errors["b"]
    assert reachable.counts == {"ok": 0, "pending": 0, "firing": 0, "unknown": 1, "error": 0}
    assert list(reachable.unknown) == [""] and "stats" in reachable.unknown[""]


def test_the_entities_metric_has_a_state_per_kind() -> None:
    from engine.loop import TickReport
    from engine.metrics import EngineMetrics

    per_entity = {"name": "space", "for_each": "nodes", "key": "item.id", "expr": "item.free > 10"}
    t = Ticker(make_config(per_entity, {"name": "reachable", "expr": "stats.up"}))
    evaluation = t.tick(0, ok("nodes", [{"id": "a", "free": 50}, {"id": "b"}]), failed("stats"))
    metrics = EngineMetrics()
    metrics.record_tick(TickReport(tick=1, at=0.0, duration_s=0.0, observations={}, invariants={}), evaluation)
    value = metrics.registry.get_sample_value
    assert value("opctl_invariant_entities", {"invariant": "space", "state": "ok"}) == 1
    assert value("opctl_invariant_entities", {"invariant": "space", "state": "error"}) == 1
    assert value("opctl_invariant_entities", {"invariant": "reachable", "state": "unknown"}) == 1
    assert value("opctl_invariant_entities", {"invariant": "reachable", "state": "ok"}) == 0
