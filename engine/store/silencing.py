"""The Store's silences (schema v9): add, list, expire; each change writes its audit event in the
same transaction. The loop reads the active ones every tick, so a silence made by `opctl silence
add` or the console takes effect on the next tick."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from engine.errors import StoreError
from engine.silences import Matcher, Silence
from engine.store.base import Conn, StoreBase
from engine.store.records import _dumps

_SILENCE_COLUMNS = "id, matchers, starts_at, ends_at, created_by, comment, created_at"


def _silence_from_row(r: tuple[Any, ...]) -> Silence:
    matchers = tuple(Matcher(m["name"], m["value"], bool(m.get("regex", False))) for m in json.loads(r[1]))
    return Silence(r[0], matchers, r[2], r[3], r[4], r[5], r[6])


class SilencingStore(StoreBase):
    """Silences of a Store."""

    def add_silence(
        self, matchers: Sequence[Matcher], *, starts_at: float | None, ends_at: float, actor: str, comment: str
    ) -> Silence:
        now = self._clock()
        start = now if starts_at is None else starts_at
        if not matchers:
            raise StoreError("a silence needs at least one matcher (invariant=..., key=..., severity=...)")
        if ends_at <= start:
            raise StoreError("a silence must end after it starts")
        if not comment.strip():
            raise StoreError("a silence needs a comment: say why it is silenced")
        with self._transaction() as conn:
            silence_id = int(conn.execute(
                f"INSERT INTO silences ({_SILENCE_COLUMNS.partition(', ')[2]}) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (_dumps([m.as_json() for m in matchers]), start, ends_at, actor, comment, now),
            ).fetchone()[0])
            silence = self._silence(conn, silence_id)
            assert silence is not None
            self._insert_event(conn, "silence_added", None, None, None, actor, now, silence.as_json(now))
            return silence

    def expire_silence(self, silence_id: int, *, actor: str) -> Silence:
        """End a silence now (Alertmanager's expire): it stays listed, as expired."""
        now = self._clock()
        with self._transaction() as conn:
            silence = self._silence(conn, silence_id)
            if silence is None:
                raise StoreError(f"there is no silence #{silence_id} in {self.path}")
            if silence.state(now) == "expired":
                raise StoreError(f"silence #{silence_id} has already expired; nothing to do")
            conn.execute("UPDATE silences SET ends_at = ?, starts_at = MIN(starts_at, ?) WHERE id = ?", (now, now, silence_id))
            self._insert_event(conn, "silence_expired", None, None, None, actor, now, {"silence": silence_id})
            return self._silence(conn, silence_id)  # type: ignore[return-value]

    def silence(self, silence_id: int) -> Silence | None:
        with self._reading() as conn:
            return self._silence(conn, silence_id)

    def silences(self, *, active_at: float | None = None, limit: int = 1000) -> list[Silence]:
        """Newest first; with `active_at`, only those active then."""
        query = f"SELECT {_SILENCE_COLUMNS} FROM silences"
        args: tuple[Any, ...] = ()
        if active_at is not None:
            query += " WHERE starts_at <= ? AND ends_at > ?"
            args = (active_at, active_at)
        with self._reading() as conn:
            rows = conn.execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_silence_from_row(r) for r in rows]

    @staticmethod
    def _silence(conn: Conn, silence_id: int) -> Silence | None:
        row = conn.execute(f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE id = ?", (silence_id,)).fetchone()
        return None if row is None else _silence_from_row(row)
