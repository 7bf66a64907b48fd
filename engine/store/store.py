"""`Store`: the ticketing, acting and reverting parts over one shared backend (see engine.store)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from engine.evaluate import EntityState
from engine.store.base import BUSY_TIMEOUT_S, Backend
from engine.store.incidents import IncidentStore
from engine.store.leasing import LeasingStore
from engine.store.location import store_location
from engine.store.outbox import OutboxStore
from engine.store.reverting import RevertingStore
from engine.store.silencing import SilencingStore
from engine.store.ticketing import TicketingStore


class Store(TicketingStore, RevertingStore, LeasingStore, IncidentStore, OutboxStore, SilencingStore):
    """The ticket store of one subject: a SQLite file (a path, or `sqlite:///PATH`) or a
    PostgreSQL database (`postgresql://user:pass@host:port/db`). Engines sharing it compete for
    the leader lease (engine.store.leasing): only the holder writes; readers such as
    `opctl tickets` are fine beside it."""

    def __init__(
        self, path: Path | str, *, clock: Callable[[], float] = time.time, busy_timeout: float = BUSY_TIMEOUT_S
    ) -> None:
        self._clock = clock
        at = store_location(path)
        self.path = at if isinstance(at, Path) else None
        self._backend = _open_backend(at, busy_timeout)
        self._dialect = self._backend.dialect
        self.location = self._backend.location
        try:
            self._migrate()
            # the non-ok states as last written, to write only what changed each tick
            self._saved: dict[tuple[str, str], EntityState] = self._read_states()
        except BaseException:
            self._backend.close()
            raise


def _open_backend(location: Path | str, busy_timeout: float) -> Backend:
    if isinstance(location, Path):
        from engine.store.sqlite_file import SqliteFile

        return SqliteFile(location, busy_timeout)
    # imported here: psycopg is only loaded by a store that uses it
    from engine.store.postgres import PostgresDatabase

    return PostgresDatabase(location, timeout=busy_timeout)
