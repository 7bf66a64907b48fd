"""Property: for any sequence of healthy / violated / unknown / error samples, any `for`, `keep_firing_for`,
`on_error` and tick spacing, run through the Evaluator and `Store.apply_tick` on a real SQLite
file (with a restart somewhere in the middle):

* tickets opened == firing episodes, each ticket spans exactly its episode;
* under `on_error: keep` no ticket resolves on an unknown or error sample;
* no ticket opens before `for` has elapsed since the violation began;
* at most one open ticket per key at any time;
* every transition has an event, in order;
* the Evaluator agrees with `advance` driven directly;
* and, against an oracle written from the rules alone (not from `advance`): a ticket fires at
  exactly the first violated sample at which the violation has lasted `for`, and resolves at
  exactly the first healthy sample at which health has lasted `keep_firing_for`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.config.models import Config
from engine.evaluate import EntityState, Evaluator, advance
from engine.observe import ObservationResult
from engine.store import Store

TRANSITION_KINDS = {"pending", "firing", "resolved", "cleared"}

# unknown: the observation fails; error: it answers, but the expression cannot be evaluated on it
samples_st = st.lists(st.sampled_from(["healthy", "violated", "unknown", "error"]), min_size=1, max_size=30)
durations_st = st.sampled_from([0, 1, 5, 10, 30])


def config_for(hold: int, keep_firing_for: int, on_error: str) -> Config:
    return Config.model_validate(
        {
            "version": 1,
            "subject": {"name": "prop"},
            "targets": {"api": {"url": "http://127.0.0.1:9"}},
            "observations": {"probe": {"http": {"target": "api", "path": "/"}}},
            "invariants": [
                {
                    "name": "up",
                    "expr": "probe.healthy",
                    "for": f"{hold}s",
                    "keep_firing_for": f"{keep_firing_for}s",
                    "on_error": on_error,
                }
            ],
        }
    )


def observation(sample: str) -> ObservationResult:
    if sample == "unknown":
        return ObservationResult("probe", False, None, "timeout after 2s", 2.0, None)
    if sample == "error":
        return ObservationResult("probe", True, {"healthy": "yes"}, None, 0.01, "http://127.0.0.1:9")
    return ObservationResult("probe", True, {"healthy": sample == "healthy"}, None, 0.01, "http://127.0.0.1:9")


def effective(sample: str, on_error: str) -> str:
    """What a sample means to the state machine: error and unknown → violated / healthy / neutral."""
    if sample not in ("error", "unknown"):
        return sample
    return {"keep": "neutral", "firing": "violated", "ok": "healthy"}[on_error]


def oracle(samples: list[str], times: list[float], hold: int, keep_firing_for: int, on_error: str) -> tuple[list[float], list[float]]:
    """When tickets fire and resolve, from the rules: a violation counts from its first violated
    sample (healthy ends it; a neutral sample neither ends nor fires it); health counts from the
    first healthy sample while firing (violated ends it; neutral neither ends nor resolves it)."""
    fired: list[float] = []
    resolved: list[float] = []
    firing, since = False, None
    for sample, now in zip(samples, times):
        e = effective(sample, on_error)
        if not firing:
            if e == "healthy":
                since = None
            elif e == "violated":
                since = now if since is None else since
                if now - since >= hold:
                    firing, since = True, None
                    fired.append(now)
        else:
            if e == "violated":
                since = None
            elif e == "healthy":
                since = now if since is None else since
                if now - since >= keep_firing_for:
                    firing, since = False, None
                    resolved.append(now)
    return fired, resolved


@settings(max_examples=75, deadline=None)
@given(
    samples=samples_st,
    gaps=st.lists(st.integers(min_value=1, max_value=20), min_size=30, max_size=30),
    hold=durations_st,
    keep_firing_for=durations_st,
    on_error=st.sampled_from(["keep", "firing", "ok"]),
    restart_at=st.integers(min_value=0, max_value=30),
)
# the boundaries themselves, every run: `for` and `keep_firing_for` reached exactly, and half-way
@example(samples=["violated", "violated", "violated", "healthy", "healthy", "healthy"], gaps=[5] * 30, hold=10,
         keep_firing_for=10, on_error="keep", restart_at=30)
@example(samples=["violated", "healthy", "violated", "violated", "healthy", "violated", "healthy", "healthy"], gaps=[3] * 30,
         hold=5, keep_firing_for=5, on_error="keep", restart_at=4)
def test_tickets_follow_firing_episodes(
    samples: list[str], gaps: list[int], hold: int, keep_firing_for: int, on_error: str, restart_at: int
) -> None:
    config = config_for(hold, keep_firing_for, on_error)
    inv = config.invariants[0]
    evaluator = Evaluator(config)
    times = [sum(gaps[: i + 1]) + 1000.0 for i in range(len(samples))]

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prop.db"
        store = Store(path)
        states: Any = store.load_states()
        direct: EntityState | None = None
        all_transitions = []
        opened_at: list[float] = []
        resolved_at: list[float] = []
        for i, (sample, now) in enumerate(zip(samples, times)):
            if i == restart_at:  # the engine restarts: state comes back from the file
                store.close()
                store = Store(path)
                states = store.load_states()
            probe = observation(sample)
            result = evaluator.evaluate({"probe": probe}, {}, states, now)
            direct, expected = advance(direct, sample, now, inv, key="", error="x")  # type: ignore[arg-type]
            assert [(t.kind, t.at) for t in result.transitions] == ([(expected.kind, now)] if expected else [])
            assert result.states[("up", "")].status == direct.status
            changes = store.apply_tick(
                states=result.states,
                transitions=result.transitions,
                entities=result.entities,
                observations_snapshot={"probe": probe.value},
                invariants={"up": inv},
                messages={},
                now=now,
            )
            states = result.states
            all_transitions += result.transitions
            opened_at += [t.first_seen for t in changes.opened]
            resolved_at += [t.resolved_at for t in changes.resolved]  # type: ignore[misc]
            # at most one open ticket per key at any time
            assert len(store.tickets(status="open")) <= 1
            # under keep, an error sample never resolves
            if effective(sample, on_error) == "neutral":
                assert not changes.resolved
            for ticket in changes.opened:
                # `for` has elapsed since the violation began (the first violated sample of
                # the run of not-healthy samples that ends here)
                start = i
                for j in range(i, -1, -1):
                    e = effective(samples[j], on_error)
                    if e == "healthy":
                        break
                    if e == "violated":
                        start = j
                assert ticket.first_seen - times[start] >= hold

        firing = [t.at for t in all_transitions if t.kind == "firing"]
        resolved = [t.at for t in all_transitions if t.kind == "resolved"]
        assert (firing, resolved) == oracle(samples, times, hold, keep_firing_for, on_error)
        assert opened_at == firing  # one ticket per firing episode
        assert resolved_at == resolved
        tickets = sorted(store.tickets(limit=1000), key=lambda t: t.id)
        assert len(tickets) == len(firing)
        for n, ticket in enumerate(tickets):
            assert ticket.first_seen == firing[n]
            assert ticket.resolved_at == (resolved[n] if n < len(resolved) else None)
            assert ticket.previous_ticket_id == (tickets[n - 1].id if n else None)
        # every transition has an event, in order
        events = [(e.kind, e.at) for e in store.events(limit=10_000) if e.kind in TRANSITION_KINDS]
        assert events == [(t.kind, t.at) for t in all_transitions]
        store.close()
