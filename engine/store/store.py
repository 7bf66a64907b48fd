"""`Store`: the ticketing, acting and reverting parts over one shared connection (see engine.store)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from engine.evaluate import EntityState
from engine.store.base import BUSY_TIMEOUT_S
from engine.store.incidents import IncidentStore
from engine.store.outbox import OutboxStore
from engine.store.reverting import RevertingStore
from engine.store.silencing import SilencingStore
from engine.store.ticketing import TicketingStore


class Store(TicketingStore, RevertingStore, IncidentStore, OutboxStore, SilencingStore):
    """The SQLite ticket store of one subject. Not shared between processes that both write
    ticks: one engine per file (readers such as `opctl tickets` are fine)."""

    def __init__(
        self, path: Path, *, clock: Callable[[], float] = time.time, busy_timeout: float = BUSY_TIMEOUT_S
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = self._connect(busy_timeout)
        try:
            self._migrate()
            # the non-ok states as last written, to write only what changed each tick
            self._saved: dict[tuple[str, str], EntityState] = self._read_states()
        except BaseException:
            self._conn.close()
            raise
