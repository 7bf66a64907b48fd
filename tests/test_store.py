"""The ticket store on both backends: real SQLite files in tmp_path, and a real PostgreSQL
(tests/conftest.py starts one; a fresh database per test)."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.config.models import Config, Invariant
from engine.errors import StoreError
from engine.evaluate import Entity, EntityState, Evaluator, Transition, advance
from engine.observe import ObservationResult
from engine.lab.postgres_server import PostgresServer
from engine.store import MIGRATIONS, SCHEMA_VERSION, Execution, Proposal, StartRule, Store, TickChanges
from engine.store.postgres import _WRITER_LOCK
from tests.ports import free_port
from tests.store_support import RawDatabase
from tests.clock import Clock

INV = Invariant.model_validate(
    {"name": "node_up", "expr": "true", "severity": "critical", "labels": {"team": "storage"}, "for": "30s"}
)
INVARIANTS = {"node_up": INV}



class Driver:
    """Feeds samples for keys through `advance` into `Store.apply_tick`, like the engine loop."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.states: dict[tuple[str, str], EntityState] = store.load_states()

    def tick(self, now: float, **samples: str) -> TickChanges:
        transitions: list[Transition] = []
        entities: dict[tuple[str, str], Entity] = {}
        for key, sample in samples.items():
            sk = ("node_up", key)
            new, transition = advance(self.states.get(sk), sample, now, INV, key=key, error="down?" if sample == "error" else None)  # type: ignore[arg-type]
            self.states[sk] = new
            entities[sk] = Entity("node_up", key, {"id": key, "sample": sample})
            if transition is not None:
                transitions.append(transition)
        return self.store.apply_tick(
            states=self.states,
            transitions=transitions,
            entities=entities,
            observations_snapshot={"nodes": [{"id": k} for k in samples]},
            invariants=INVARIANTS,
            messages={("node_up", k): f"node {k} is down" for k in samples},
            now=now,
        )


@pytest.fixture
def store(store_at: Path | str) -> Iterator[Store]:
    """A fresh store on each backend (SQLite, PostgreSQL: tests/conftest.py `store_at`)."""
    s = Store(store_at, clock=Clock(1000.0))
    yield s
    s.close()


@pytest.fixture
def raw(store_at: Path | str) -> Iterator[RawDatabase]:
    db = RawDatabase(store_at)
    yield db
    db.close()


def test_file_is_created_0600_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "t.db"
    with Store(path):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_schema_version_is_current(store: Store) -> None:
    assert store.schema_version() == SCHEMA_VERSION >= 2


def test_a_v1_file_is_migrated_and_keeps_its_tickets(store_at: Path | str) -> None:
    if isinstance(store_at, Path):
        store_at.parent.mkdir(parents=True)
    raw = RawDatabase(store_at)
    raw.migration("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at REAL NOT NULL);")
    raw.migration(MIGRATIONS[0])
    raw.sql("INSERT INTO schema_version VALUES (1, 0)")
    raw.sql(
        "INSERT INTO tickets (invariant, entity_key, severity, status, first_seen, last_seen) "
        "VALUES ('node_up', '3', 'critical', 'open', 10, 10)"
    )
    raw.close()
    with Store(store_at) as s:
        assert s.schema_version() == SCHEMA_VERSION
        assert s.open_ticket_for("node_up", "3") is not None
        s.record_observation_errors({"nodes": "timeout after 2s"}, now=20)  # needs the v2 table
        assert [e.kind for e in s.events()] == ["observation_error"]


def test_a_file_from_a_newer_opctl_is_refused(store_at: Path | str) -> None:
    with Store(store_at):
        pass
    raw = RawDatabase(store_at)
    raw.sql("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    raw.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade opctl") as refused:
        Store(store_at)
    assert "opctl-test-" not in str(refused.value)  # the password of the PostgreSQL URL


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError, match="is not an opctl ticket store"):
        Store(path)


def test_episode_opens_one_ticket_with_snapshot_and_resolves(store: Store) -> None:
    d = Driver(store)
    assert d.tick(0, a="violated").opened == ()  # pending
    assert d.tick(10, a="violated").opened == ()
    changes = d.tick(30, a="violated")
    (ticket,) = changes.opened
    assert (ticket.invariant, ticket.entity_key, ticket.status, ticket.severity) == ("node_up", "a", "open", "critical")
    assert ticket.labels == {"team": "storage"} and ticket.message == "node a is down"
    assert ticket.snapshot == {"nodes": [{"id": "a"}], "item": {"id": "a", "sample": "violated"}}
    assert (ticket.first_seen, ticket.occurrences, ticket.previous_ticket_id) == (30, 1, None)
    assert d.tick(40, a="violated").updated == (ticket.id,)
    assert d.tick(50, a="error").updated == (ticket.id,)  # still firing under on_error keep
    changes = d.tick(60, a="healthy")
    (resolved,) = changes.resolved
    assert (resolved.id, resolved.status, resolved.resolved_at, resolved.occurrences, resolved.last_seen) == (
        ticket.id, "resolved", 60, 3, 60,
    )
    kinds = [(e.kind, e.ticket_id) for e in store.events()]
    assert kinds == [("pending", None), ("firing", ticket.id), ("resolved", ticket.id)]
    assert store.events(ticket.id)[0].data == {"before": "pending", "after": "firing", "ticket": "opened"}


def test_pending_that_clears_leaves_events_but_no_ticket(store: Store) -> None:
    d = Driver(store)
    d.tick(0, a="violated")
    d.tick(10, a="healthy")
    assert store.tickets() == []
    events = store.events()
    assert [(e.kind, e.ticket_id, e.invariant, e.entity_key) for e in events] == [
        ("pending", None, "node_up", "a"),
        ("cleared", None, "node_up", "a"),
    ]


def test_new_episode_links_the_previous_ticket(store: Store) -> None:
    d = Driver(store)
    d.tick(0, a="violated")
    first = d.tick(30, a="violated").opened[0]
    d.tick(40, a="healthy")
    d.tick(50, a="violated")
    second = d.tick(80, a="violated").opened[0]
    assert second.previous_ticket_id == first.id and second.id != first.id
    assert [t.id for t in store.tickets()] == [second.id, first.id]
    assert [t.id for t in store.tickets(status="open")] == [second.id]
    assert [t.id for t in store.tickets(status="resolved")] == [first.id]


def test_states_survive_close_and_reopen(store_at: Path | str) -> None:
    path = store_at
    with Store(path) as s:
        d = Driver(s)
        d.tick(0, a="violated", b="violated", c="healthy")
        d.tick(30, a="violated", b="healthy")
        saved = {k: v for k, v in d.states.items() if v.status != "ok"}
    with Store(path) as s:
        assert s.load_states() == saved == {("node_up", "a"): EntityState("firing", 0, 30, None, None, 30)}
        d = Driver(s)
        # the restarted engine continues the same episode: no second ticket, then resolves it
        assert d.tick(40, a="violated").opened == ()
        assert [t.entity_key for t in d.tick(50, a="healthy").resolved] == ["a"]
        assert len(s.tickets()) == 1
        assert s.load_states() == {}


def test_only_changed_states_are_written(store: Store, raw: RawDatabase) -> None:
    d = Driver(store)
    d.tick(0, a="violated")
    d.tick(10, a="violated")
    assert raw.sql("SELECT status, active_since FROM entity_states") == [("pending", 0.0)]
    d.tick(30, a="violated")
    assert raw.sql("SELECT status, fired_at FROM entity_states") == [("firing", 30.0)]
    d.tick(40, a="healthy")
    assert raw.sql("SELECT COUNT(*) FROM entity_states") == [(0,)]


def test_manual_resolve_while_firing_stays_resolved_until_next_episode(store: Store) -> None:
    d = Driver(store)
    d.tick(0, a="violated")
    ticket = d.tick(30, a="violated").opened[0]
    resolved = store.resolve(ticket.id, actor="alice", reason="known maintenance")
    assert resolved.status == "resolved" and resolved.resolved_at == 1000.0
    changes = d.tick(40, a="violated")
    assert changes.opened == () and changes.updated == ()  # no re-open loop
    assert store.ticket(ticket.id).status == "resolved"  # type: ignore[union-attr]
    d.tick(50, a="healthy")  # the episode ends
    d.tick(60, a="violated")
    new = d.tick(90, a="violated").opened[0]
    assert new.previous_ticket_id == ticket.id
    events = store.events(ticket.id)
    assert [(e.kind, e.actor) for e in events] == [("firing", "engine"), ("manual_resolve", "alice"), ("resolved", "engine")]
    assert events[1].data == {"reason": "known maintenance"} and events[2].data["ticket"] == "already resolved"


def test_held_ticket_is_not_auto_resolved(store: Store) -> None:
    d = Driver(store)
    d.tick(0, a="violated")
    ticket = d.tick(30, a="violated").opened[0]
    held = store.hold(ticket.id, actor="bob", reason="watching it")
    assert held.held
    changes = d.tick(40, a="healthy")
    assert changes.resolved == () and changes.held == (ticket.id,)
    assert store.open_ticket_for("node_up", "a").held  # type: ignore[union-attr]
    # the next episode continues the held ticket: still one open ticket for the key
    d.tick(50, a="violated")
    changes = d.tick(80, a="violated")
    assert changes.opened == () and store.open_ticket_for("node_up", "a").id == ticket.id  # type: ignore[union-attr]
    store.unhold(ticket.id, actor="bob", reason="done watching")
    assert [t.id for t in d.tick(90, a="healthy").resolved] == [ticket.id]
    kinds = [(e.kind, e.actor, e.data.get("ticket")) for e in store.events(ticket.id)]
    assert kinds == [
        ("firing", "engine", "opened"),
        ("hold", "bob", None),
        ("resolved", "engine", "held"),
        ("firing", "engine", "continued"),
        ("unhold", "bob", None),
        ("resolved", "engine", "resolved"),
    ]


@pytest.mark.parametrize(
    "action,match",
    [
        ("resolve", "cannot resolve ticket 42: there is no ticket with that id"),
        ("hold", "cannot hold ticket 42: there is no ticket with that id"),
        ("unhold", "cannot unhold ticket 42: there is no ticket with that id"),
    ],
)
def test_unknown_ticket_id_is_a_clear_error(store: Store, action: str, match: str) -> None:
    with pytest.raises(StoreError, match=match):
        getattr(store, action)(42, actor="alice", reason="x")
    with pytest.raises(StoreError, match="no ticket with that id"):
        store.add_event("note", ticket_id=42, actor="alice", data={}, at=0)


def test_wrong_status_is_a_clear_error(store: Store) -> None:
    d = Driver(store)
    d.tick(0, a="violated")
    ticket = d.tick(30, a="violated").opened[0]
    with pytest.raises(StoreError, match="is not on hold"):
        store.unhold(ticket.id, actor="a", reason="")
    store.hold(ticket.id, actor="a", reason="")
    with pytest.raises(StoreError, match="already on hold"):
        store.hold(ticket.id, actor="a", reason="")
    store.resolve(ticket.id, actor="a", reason="")
    with pytest.raises(StoreError, match="already resolved"):
        store.resolve(ticket.id, actor="a", reason="")
    with pytest.raises(StoreError, match="it is resolved"):
        store.hold(ticket.id, actor="a", reason="")


def test_events_are_append_only(store: Store, raw: RawDatabase) -> None:
    event_id = store.add_event("note", ticket_id=None, actor="alice", data={"text": "hi"}, at=5, invariant="node_up")
    assert [(e.id, e.kind, e.invariant, e.data) for e in store.events()] == [(event_id, "note", "node_up", {"text": "hi"})]
    assert not [name for name in dir(Store) if "event" in name and name.split("_")[0] in ("update", "delete", "set", "edit")]
    statements = ["UPDATE events SET actor = 'mallory'", "DELETE FROM events"]
    if raw.is_postgres:
        statements.append("TRUNCATE events")  # skips row triggers: refused by a statement trigger
    for statement in statements:
        with pytest.raises(raw.error, match="append-only"):
            raw.sql(statement)
    assert [e.actor for e in store.events()] == ["alice"]


def test_observation_errors_are_recorded_once_per_change(store: Store) -> None:
    store.record_observation_errors({"nodes": "timeout after 2s"}, now=1)
    store.record_observation_errors({"nodes": "timeout after 2s"}, now=2)
    store.record_observation_errors({"nodes": "HTTP 500: boom"}, now=3)
    store.record_observation_errors({}, now=4)
    store.record_observation_errors({}, now=5)
    got = [(e.kind, e.at, e.data["reason"], e.actor) for e in store.events()]
    assert got == [
        ("observation_error", 1, "timeout after 2s", "engine"),
        ("observation_error", 3, "HTTP 500: boom", "engine"),
        ("observation_recovered", 4, "HTTP 500: boom", "engine"),
    ]


def test_reader_is_not_blocked_by_a_writer_and_writer_waits_for_writer(store_at: Path | str) -> None:
    path = store_at
    store = Store(path)
    store.add_event("note", ticket_id=None, actor="a", data={}, at=1)
    other = RawDatabase(path)
    # another process holds the write lock (PostgreSQL: the advisory lock every writer takes)
    if other.is_postgres:
        other.sql("BEGIN")
        other.sql("SELECT pg_advisory_xact_lock(?)", (_WRITER_LOCK,))
    else:
        other.sql("BEGIN IMMEDIATE")
    other.sql("INSERT INTO events (kind, actor, at) VALUES ('other', 'b', 2)")
    # a reader (e.g. `opctl tickets`) sees the last committed state without waiting
    with Store(path) as reader:
        assert [e.kind for e in reader.events()] == ["note"]
    # a writer with a short busy timeout gives a clear error instead of hanging
    with Store(path, busy_timeout=0.05) as impatient:
        with pytest.raises(StoreError, match="locked by another writer"):
            impatient.add_event("note", ticket_id=None, actor="c", data={}, at=3)
    # a writer with the default timeout waits until the lock is released, then succeeds
    result: list[Any] = []
    writer = threading.Thread(target=lambda: result.append(store.add_event("late", ticket_id=None, actor="d", data={}, at=4)))
    writer.start()
    other.sql("COMMIT")
    writer.join(timeout=10)
    assert not writer.is_alive() and len(result) == 1
    assert [e.kind for e in store.events()] == ["note", "other", "late"]
    other.close()
    store.close()


def test_evaluator_state_map_is_stored_without_its_ok_entities(store_at: Path | str) -> None:
    config = Config.model_validate(
        {
            "version": 1,
            "subject": {"name": "t"},
            "targets": {"api": {"url": "http://127.0.0.1:9"}},
            "observations": {"nodes": {"http": {"target": "api"}}},
            "invariants": [{"name": "node_up", "for_each": "nodes", "key": "item.id", "expr": "item.up"}],
        }
    )
    nodes = [{"id": i, "up": i != 7} for i in range(1000)]
    result = Evaluator(config).evaluate({"nodes": ObservationResult("nodes", True, nodes, None, 0.0, None)}, {}, {}, 5.0)
    with Store(store_at) as s:
        changes = s.apply_tick(
            states=result.states, transitions=result.transitions, entities=result.entities,
            observations_snapshot={}, invariants={"node_up": config.invariants[0]}, messages={}, now=5.0,
        )
        assert [(t.entity_key, t.snapshot["item"]) for t in changes.opened] == [("7", {"id": 7, "up": False})]
        assert s.load_states() == {("node_up", "7"): EntityState("firing", 5.0, 5.0, None, None, 5.0)}


CRASHING_ENGINE = """
import sys
from pathlib import Path
from engine.config.models import Invariant
from engine.evaluate import Entity, advance
from engine.store import Store

inv = Invariant.model_validate({"name": "node_up", "expr": "true"})
store = Store(sys.argv[1])
state, transition = advance(None, "violated", 10.0, inv, key="a")
store.apply_tick(states={("node_up", "a"): state}, transitions=[transition],
                 entities={("node_up", "a"): Entity("node_up", "a", None)}, observations_snapshot={},
                 invariants={"node_up": inv}, messages={}, now=10.0)
print("ticked", flush=True)
sys.stdin.read()  # block until killed
"""


def test_sigkill_mid_episode_keeps_the_ticket_and_its_state(store_at: Path | str) -> None:
    path = store_at
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_ENGINE, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ticked\n"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()
    with Store(path) as s:
        assert s.load_states()[("node_up", "a")].status == "firing"
        (ticket,) = s.tickets()
        d = Driver(s)
        assert d.tick(20, a="violated").opened == ()  # the same ticket continues
        assert [t.id for t in d.tick(30, a="healthy").resolved] == [ticket.id]


# --------------------------------------------------------------------------- PostgreSQL only


def test_postgres_restart_is_a_loud_error_then_the_store_reconnects_and_loses_nothing(own_postgres: PostgresServer) -> None:
    url = own_postgres.create_database("restarts")
    store = Store(url, clock=Clock(1000.0))
    d = Driver(store)
    d.tick(0, a="violated")
    d.tick(30, a="violated")  # firing: ticket 1
    (first,) = store.tickets()
    own_postgres.stop()
    # while it is down: every call fails with one line naming the database, password masked
    for call in (store.tickets, store.open_ticket_count, lambda: store.add_event("note", ticket_id=None, actor="a", data={}, at=31)):
        with pytest.raises(StoreError) as down:
            call()
        message = str(down.value)
        assert "postgresql://opctl:[REDACTED]@127.0.0.1:" in message and own_postgres.password not in message
        assert "\n" not in message
    # a tick while it is down is not written, and the Driver's next states were not saved
    before = dict(d.states)
    with pytest.raises(StoreError):
        d.tick(40, a="violated", b="violated")
    own_postgres.start()
    d.states = before  # what the loop does: a failed tick's states are not kept (engine.loop)
    d.tick(40, a="violated", b="violated")
    d.tick(70, a="violated", b="violated")  # b fires now
    assert [(t.entity_key, t.id == first.id) for t in store.tickets(status="open")] == [("b", False), ("a", True)]
    assert store.ticket(first.id).occurrences == 3  # type: ignore[union-attr]
    store.close()


def test_a_connection_dropped_by_the_server_fails_that_call_only(postgres_url: str) -> None:
    store = Store(postgres_url, clock=Clock(1000.0))
    store.add_event("note", ticket_id=None, actor="a", data={}, at=1)
    raw = RawDatabase(postgres_url)
    # the server ends every other session of the database (as a restart or a failover does)
    raw.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid != pg_backend_pid()")
    raw.close()
    with pytest.raises(StoreError, match=r"dropped the connection .*nothing of this change was kept"):
        store.add_event("lost", ticket_id=None, actor="a", data={}, at=2)
    store.add_event("kept", ticket_id=None, actor="a", data={}, at=3)
    assert [e.kind for e in store.events()] == ["note", "kept"]
    store.close()


@pytest.mark.parametrize("problem", ["unknown scheme", "unreachable host", "wrong password", "no such database"])
def test_bad_store_urls_are_one_line_naming_the_url_without_its_password(problem: str, postgres_server: PostgresServer) -> None:
    password = postgres_server.password
    url, secret, expected = {
        "unknown scheme": ("mysql://opctl:hunter22@127.0.0.1/opctl", "hunter22", "unknown scheme 'mysql'"),
        "unreachable host": (f"postgresql://opctl:hunter22@127.0.0.1:{free_port()}/opctl", "hunter22", "Connection refused"),
        "wrong password": (postgres_server.url(password="hunter22"), "hunter22", "password authentication failed"),
        "no such database": (postgres_server.url("absent"), password, 'database "absent" does not exist'),
    }[problem]
    with pytest.raises(StoreError) as refused:
        Store(url)
    message = str(refused.value)
    assert expected in message and secret not in message and "\n" not in message
    assert url.replace(secret, "[REDACTED]") in message


def test_an_existing_store_and_its_wal_and_shm_are_tightened_to_0600(tmp_path: Path) -> None:
    path = tmp_path / "loose.db"
    Store(path).close()
    sidecars = [Path(f"{path}{s}") for s in ("-wal", "-shm")]
    for file in (path, *sidecars):
        file.touch()
        os.chmod(file, 0o644)
    with Store(path):
        assert [stat.S_IMODE(f.stat().st_mode) for f in (path, *sidecars)] == [0o600, 0o600, 0o600]


def test_an_empty_file_is_refused_and_said_to_be_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    with pytest.raises(StoreError, match="is an empty file, not an opctl ticket store"):
        Store(path)
    assert path.read_bytes() == b""  # left as it was


def test_a_non_database_file_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("my notes\n")
    os.chmod(path, 0o644)
    with pytest.raises(StoreError, match="not a SQLite database"):
        Store(path)
    assert path.read_text() == "my notes\n" and stat.S_IMODE(path.stat().st_mode) == 0o644


def _proposed(store: Store, status: str, at: float) -> Proposal:
    """A proposal for entity `a`'s ticket (opened on the first call)."""
    ticket = store.tickets(status="open")[0] if store.tickets(status="open") else None
    if ticket is None:
        d = Driver(store)
        d.tick(0, a="violated")
        (ticket,) = d.tick(30, a="violated").opened
    return store.add_proposal(ticket.id, action="deregister_node", params={"node_id": "a"}, reason="r", source="runbook",
                              status=status, at=at)


def test_insert_or_replace_cannot_rewrite_events_proposals_or_executions(tmp_path: Path) -> None:
    # SQLite only: PostgreSQL has no REPLACE (an ON CONFLICT DO UPDATE is an update, refused by
    # the no-update triggers the store suite checks on both backends)
    store = Store(tmp_path / "replace.db", clock=Clock(1000.0))
    proposal = _proposed(store, "approved", 31)
    rule = StartRule("deregister_node", "a", cooldown=0, max_attempts=3, budget_per_hour=None, total_budget_per_hour=20)
    assert isinstance(store.begin_execution(proposal.id, request={"line": "DELETE /v1/nodes/a"}, at=32, rule=rule), Execution)
    conn = sqlite3.connect(store.path)
    before = {t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in ("events", "proposals", "executions")}
    assert all(before.values())
    for table in before:
        with pytest.raises(sqlite3.DatabaseError, match="append-only|cannot be replaced"):
            conn.execute(f"INSERT OR REPLACE INTO {table} SELECT * FROM {table} WHERE id = 1")
        with pytest.raises(sqlite3.DatabaseError, match="append-only|cannot be replaced"):
            conn.execute(f"REPLACE INTO {table} SELECT * FROM {table} WHERE id = (SELECT MAX(id) FROM {table})")
    assert {t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in before} == before
    conn.close()
    store.close()


def test_approve_is_refused_while_the_kill_switch_is_on(store: Store) -> None:
    waiting = _proposed(store, "awaiting_approval", 31)
    store.kill(actor="cli:dana", reason="incident")
    again = _proposed(store, "awaiting_approval", 32)  # proposed after the kill: still only waits
    with pytest.raises(StoreError, match="the kill switch is on"):
        store.approve(again.id, actor="cli:erin")
    assert store.proposal(again.id).status == "awaiting_approval"  # type: ignore[union-attr]
    assert store.proposal(waiting.id).status == "cancelled"  # type: ignore[union-attr]


def test_replicas_opening_a_fresh_store_at_once_migrate_it_once(store_at: Path | str) -> None:
    if isinstance(store_at, Path):
        store_at.parent.mkdir(parents=True)
    barrier = threading.Barrier(3)
    opened: list[Store] = []
    failed: list[BaseException] = []

    def open_one() -> None:
        barrier.wait()
        try:
            opened.append(Store(store_at))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failed.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not failed and len(opened) == 3
    raw = RawDatabase(store_at)
    assert raw.sql("SELECT version FROM schema_version ORDER BY version") == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
    raw.close()
    for store in opened:
        store.close()
