"""The Store's reverts: what undoes an action that ran, from the moment it is armed (with the
execution that succeeded, in its transaction: see `ActingStore.finish_execution`) until it is
done or given up. Each change writes its event on the ticket in the same transaction, so a crash
between a ticket's resolution and its revert loses nothing: the revert is still armed on restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import StoreError
from engine.store.acting import ActingStore
from engine.store.base import Conn
from engine.store.records import _REVERT_COLUMNS, ArmedRevert, Proposal, _revert_from_row
from engine.store.statuses import RESOLVED

REVERT_SOURCE = "revert"  # the `source` of a revert's proposals


class RevertingStore(ActingStore):
    """Armed reverts of a Store (see engine.act.revert for when they run)."""

    def armed_reverts(self) -> list[ArmedRevert]:
        """Armed reverts whose ticket has resolved, oldest first (the others wait for theirs)."""
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_REVERT_COLUMNS} FROM reverts WHERE status = 'armed' "
                f"AND ticket_id IN (SELECT id FROM tickets WHERE status = '{RESOLVED}') ORDER BY id"
            ).fetchall()
        return [_revert_from_row(r) for r in rows]

    def reverts(self, *, ticket_id: int | None = None) -> list[ArmedRevert]:
        """Every revert (of one ticket), oldest first."""
        where, args = ("WHERE ticket_id = ?", (ticket_id,)) if ticket_id is not None else ("", ())
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {_REVERT_COLUMNS} FROM reverts {where} ORDER BY id", args).fetchall()
        return [_revert_from_row(r) for r in rows]

    def propose_revert(
        self,
        revert_id: int,
        *,
        action: str,
        params: Mapping[str, Any],
        reason: str,
        status: str,
        at: float,
        gate: str | None = None,
        detail: str | None = None,
        expires_at: float | None = None,
    ) -> Proposal:
        """A proposal for the revert on its ticket, linked to it in the same transaction."""
        with self._transaction() as conn:
            revert = self._revert(conn, revert_id)
            proposal = self._insert_proposal(
                conn, revert.ticket_id, action=action, params=params, reason=reason, source=REVERT_SOURCE, status=status,
                at=at, gate=gate, detail=detail, expires_at=expires_at, actor="engine",
            )  # fmt: skip
            conn.execute("UPDATE reverts SET proposal_id = ?, waiting = NULL WHERE id = ?", (proposal.id, revert_id))
            return proposal

    def rearm_revert(self, revert_id: int) -> None:
        """Its proposal may be made again (observe mode left, cancelled by the kill switch)."""
        with self._transaction() as conn:
            conn.execute("UPDATE reverts SET proposal_id = NULL WHERE id = ? AND status = 'armed'", (revert_id,))

    def revert_waits(self, revert_id: int, reason: str, *, at: float) -> None:
        """Record why the revert does not run yet; the same reason is recorded once."""
        with self._transaction() as conn:
            revert = self._revert(conn, revert_id)
            if revert.waiting == reason:
                return
            conn.execute("UPDATE reverts SET waiting = ? WHERE id = ?", (reason, revert_id))
            self._revert_event(conn, revert, "revert_waiting", at, {"reason": reason})

    def close_revert(self, revert_id: int, *, done: bool, reason: str, at: float) -> ArmedRevert:
        """The revert ran (`done`), or cannot run (given up): said on its ticket."""
        with self._transaction() as conn:
            revert = self._revert(conn, revert_id)
            if revert.status != "armed":
                raise StoreError(f"revert #{revert_id} is already {revert.status}")
            status = "done" if done else "given_up"
            conn.execute("UPDATE reverts SET status = ?, closed_at = ? WHERE id = ?", (status, at, revert_id))
            self._revert_event(conn, revert, "reverted" if done else "revert_given_up", at, {"reason": reason})
            return self._revert(conn, revert_id)

    # ------------------------------------------------------------------ internals

    def _revert(self, conn: Conn, revert_id: int) -> ArmedRevert:
        row = conn.execute(f"SELECT {_REVERT_COLUMNS} FROM reverts WHERE id = ?", (revert_id,)).fetchone()
        if row is None:
            raise StoreError(f"there is no revert #{revert_id} in {self.location}")
        return _revert_from_row(row)

    def _revert_event(self, conn: Conn, revert: ArmedRevert, kind: str, at: float, data: Mapping[str, Any]) -> None:
        ticket = self._ticket(conn, revert.ticket_id)
        assert ticket is not None  # a foreign key
        event = {"revert": revert.id, "action": revert.action, "params": revert.params, "proposal": revert.proposal_id, **data}
        self._insert_event(conn, kind, ticket.id, ticket.invariant, ticket.entity_key, "engine", at, event)
