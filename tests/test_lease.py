"""The leader lease and fencing of the store (engine.store.leasing), on both backends (a real
SQLite file, a real PostgreSQL: `store_at`) shared by several Store objects (each its own
connection, as two processes have): who leads, the token only grows, the database's clock times
it, and a writer whose token is not current writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import NotLeader, StaleStatus
from engine.store import Store
from tests.store_support import RawDatabase
from tests.waiting import wait_for


def test_the_first_replica_leads_and_the_second_follows(store_at: Path | str) -> None:
    with Store(store_at) as a, Store(store_at) as b:
        first = a.hold_lease("a", ttl=60)
        assert first.leading and first.acquired and first.token == 1 and first.holder == "a"
        seen = b.hold_lease("b", ttl=60)
        assert not seen.leading and seen.holder == "a" and seen.token == 1
        renewed = a.hold_lease("a", ttl=60)
        assert renewed.leading and not renewed.acquired and renewed.token == 1
        assert renewed.expires_at is not None and first.expires_at is not None and renewed.expires_at >= first.expires_at
        assert b.lease().holder == "a"


def test_a_lapsed_lease_is_taken_with_the_next_token_and_fences_the_old_holder(store_at: Path | str) -> None:
    with Store(store_at) as a, Store(store_at) as b:
        assert a.hold_lease("a", ttl=0.05).leading
        a.add_event("note", ticket_id=None, actor="a", at=1.0, data={})  # a leader writes
        taken = wait_for(lambda: (lease := b.hold_lease("b", ttl=60)).leading and lease)
        assert taken.acquired and taken.token == 2 and taken.holder == "b"
        # the paused ex-leader wakes up: every write is refused, and nothing was written
        before = len(b.events(limit=1000))
        with pytest.raises(NotLeader, match=r"token 1\) is no longer current; the lease is held by b \(token 2\)"):
            a.add_event("note", ticket_id=None, actor="a", at=2.0, data={})
        assert len(b.events(limit=1000)) == before
        # its next renewal finds the lease taken: it follows
        again = a.hold_lease("a", ttl=60)
        assert not again.leading and again.holder == "b" and again.token == 2
        with pytest.raises(NotLeader, match="does not hold the leader lease"):
            a.add_event("note", ticket_id=None, actor="a", at=3.0, data={})
        b.add_event("note", ticket_id=None, actor="b", at=3.0, data={})
        kinds = [(e.kind, e.data.get("token")) for e in b.events(limit=1000) if e.kind == "leader"]
        assert kinds == [("leader", 1), ("leader", 2)]


def test_a_lapsed_lease_nobody_took_is_still_its_holders(store_at: Path | str) -> None:
    # no other replica can have written since: the holder's write passes, and renews it
    with Store(store_at) as a, Store(store_at) as b:
        assert a.hold_lease("a", ttl=0.05).leading
        wait_for(lambda: not a.lease().valid)
        a.add_event("note", ticket_id=None, actor="a", at=1.0, data={})
        lease = b.lease()
        assert lease.valid and lease.holder == "a" and lease.token == 1
        assert not b.hold_lease("b", ttl=60).leading


def test_a_released_lease_is_taken_at_once_and_a_restart_under_the_same_id_gets_a_new_token(store_at: Path | str) -> None:
    with Store(store_at) as a, Store(store_at) as b:
        assert a.hold_lease("a", ttl=60).token == 1
        a.release_lease("a")
        assert b.hold_lease("b", ttl=60).token == 2
    with Store(store_at) as b_restarted:
        # the same replica id in a new process does not inherit the token: it waits like any other
        assert not b_restarted.hold_lease("b", ttl=60).leading


def test_lease_times_come_from_the_database_clock(store_at: Path | str) -> None:
    # a replica's own clock (here 40 years off) plays no part in the lease
    with Store(store_at, clock=lambda: 0.0) as a:
        lease = a.hold_lease("a", ttl=30)
        assert lease.expires_at is not None and abs(lease.expires_at - (a.db_now() + 30)) < 5
        raw = RawDatabase(store_at)
        [(held,)] = raw.sql("SELECT expires_at - renewed_at FROM leases")
        raw.close()
        assert held == pytest.approx(30)


def test_the_token_only_grows_over_many_takeovers(store_at: Path | str) -> None:
    stores = [Store(store_at) for _ in range(3)]
    try:
        tokens = []
        for round_ in range(6):
            store = stores[round_ % 3]
            lease = wait_for(lambda s=store, r=round_: (held := s.hold_lease(f"r{r % 3}", ttl=60)).leading and held)
            tokens.append(lease.token)
            store.release_lease(f"r{round_ % 3}")
        assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    finally:
        for store in stores:
            store.close()


def test_a_store_without_a_lease_writes_as_before(store_at: Path | str) -> None:
    with Store(store_at) as cli:
        cli.kill(actor="cli:ann")  # switches from the command line are never fenced
        assert cli.killed() is not None


def test_a_proposal_moved_by_another_writer_is_a_stale_status(store_at: Path | str) -> None:
    with Store(store_at) as store:
        store.add_event("x", ticket_id=None, actor="t", at=1.0, data={})
        raw = RawDatabase(store_at)
        raw.sql("INSERT INTO tickets (invariant, entity_key, severity, status, first_seen, last_seen) VALUES ('i', 'k', 'warning', 'open', 1, 1)")
        raw.close()
        proposal = store.add_proposal(1, action="a", params={}, reason="", source="t", status="awaiting_approval", at=1.0)
        store.reject(proposal.id, actor="cli:ann")
        with pytest.raises(StaleStatus, match="rejected, not awaiting_approval"):
            store.set_proposal_status(proposal.id, "approved", actor="x", at=2.0, expect=("awaiting_approval",))
        # a second live proposal for the same ticket is refused as in flight, atomically
        first = store.add_proposal(1, action="a", params={}, reason="", source="t", status="awaiting_approval", at=3.0)
        second = store.add_proposal(1, action="a", params={}, reason="", source="t", status="approved", at=3.0)
        assert first.status == "awaiting_approval"
        assert second.status == "refused" and second.gate == "in_flight" and f"#{first.id}" in (second.detail or "")
