"""The Store's leader lease: which of the replicas sharing a store acts, with fencing.

    lease = store.hold_lease("host-a:812", ttl=30.0)   # acquire or renew; every tick
    lease.leading, lease.token, lease.expires_at        # token: grows with every new holder
    store.release_lease("host-a:812")                   # a clean stop hands over at once

One row (`leases`, name `leader`). A replica holds it while `expires_at` (the database's clock,
never a replica's) is ahead; the holder renews it every tick; once it lapses any replica takes
it with the token + 1. Holding it turns fencing on for this Store: every write transaction
(ticket transitions, diagnoses, proposals, executions) first checks, in the same transaction,
that this replica's token is still the current one, and renews it (a tick longer than the ttl
that keeps writing keeps leading). A replica that was paused past its lease (GC, SIGSTOP, a VM
migration) while another took it over cannot write, hence cannot start an execution. (A lease
that lapsed while nobody took it is still its holder's: no other replica wrote meanwhile.) A replica that restarts under the same id waits for its old lease to
lapse like any other: a token is never handed to a second process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.store.base import LEADER, StoreBase


@dataclass(frozen=True)
class Lease:
    """The leader lease as one replica saw it, in the database's clock."""

    holder: str | None  # None: nobody ever held it
    token: int
    expires_at: float | None
    now: float  # the database's clock when read
    replica: str | None = None  # who asked
    leading: bool = False  # the asking replica holds it (with `token`)
    acquired: bool = False  # ... and took it just now (a new token)

    @property
    def valid(self) -> bool:
        return self.expires_at is not None and self.expires_at > self.now

    def as_json(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "leader": self.holder if self.valid else None,
            "leading": self.leading,
            "token": self.token,
            "expires_at": self.expires_at,
            "expires_in_s": None if self.expires_at is None else round(self.expires_at - self.now, 3),
        }


class LeasingStore(StoreBase):
    """The leader lease of a Store and the fencing it turns on."""

    def hold_lease(self, replica: str, *, ttl: float) -> Lease:
        """Renew the lease when this Store holds it, take it when it lapsed, else follow.
        From the first call on, this Store writes only while it leads (fencing), and each of its
        writes renews the lease for `ttl` while it is current."""
        self._fencing = True
        self._lease_ttl = ttl
        with self._transaction(fenced=False) as conn:
            now = float(conn.execute(f"SELECT {self._dialect.now}").fetchone()[0])
            row = conn.execute("SELECT holder, token, expires_at FROM leases WHERE name = ?", (LEADER,)).fetchone()
            mine = row is not None and row[0] == replica and self._fence == int(row[1])
            if mine:
                conn.execute("UPDATE leases SET renewed_at = ?, expires_at = ? WHERE name = ? AND token = ?",
                             (now, now + ttl, LEADER, self._fence))
                return Lease(replica, int(row[1]), now + ttl, now, replica, leading=True)
            if row is None or float(row[2]) <= now:
                token = 1 if row is None else int(row[1]) + 1
                if row is None:
                    conn.execute(
                        "INSERT INTO leases (name, holder, token, acquired_at, renewed_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (LEADER, replica, token, now, now, now + ttl),
                    )
                else:  # a compare-and-set on the lapsed token
                    conn.execute(
                        "UPDATE leases SET holder = ?, token = ?, acquired_at = ?, renewed_at = ?, expires_at = ? "
                        "WHERE name = ? AND token = ?", (replica, token, now, now, now + ttl, LEADER, row[1]),
                    )
                self._insert_event(conn, "leader", None, None, None, f"replica:{replica}", now,
                                   {"replica": replica, "token": token, "previous": None if row is None else row[0]})
                self._fence = token
                return Lease(replica, token, now + ttl, now, replica, leading=True, acquired=True)
            self._fence = None
            return Lease(str(row[0]), int(row[1]), float(row[2]), now, replica)

    def release_lease(self, replica: str) -> None:
        """On a clean stop: the lease lapses now, so a follower takes over on its next tick."""
        if self._fence is None:
            return
        with self._transaction(fenced=False) as conn:
            conn.execute(f"UPDATE leases SET expires_at = {self._dialect.now} WHERE name = ? AND holder = ? AND token = ?",
                         (LEADER, replica, self._fence))
        self._fence = None

    def lease(self) -> Lease:
        """The lease as it stands (for `opctl status`)."""
        with self._reading() as conn:
            now = float(conn.execute(f"SELECT {self._dialect.now}").fetchone()[0])
            row = conn.execute("SELECT holder, token, expires_at FROM leases WHERE name = ?", (LEADER,)).fetchone()
        if row is None:
            return Lease(None, 0, None, now)
        return Lease(str(row[0]), int(row[1]), float(row[2]), now)
