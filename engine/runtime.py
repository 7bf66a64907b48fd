"""Building the engine's parts from a config path (shared by the CLI commands)."""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager

from engine.config.validate import load_config
from engine.errors import StoreError
from engine.loop import Monitor
from engine.store import Store, Ticket


def open_monitor(config_path: str) -> Monitor:
    loaded = load_config(config_path)
    return Monitor(loaded, store=Store(loaded.store_path))


@contextmanager
def open_store(config_path: str) -> Iterator[Store]:
    loaded = load_config(config_path)
    store = Store(loaded.store_path)
    try:
        yield store
    finally:
        store.close()


def require_ticket(store: Store, ticket_id: int) -> Ticket:
    ticket = store.ticket(ticket_id)
    if ticket is None:
        raise StoreError(f"there is no ticket #{ticket_id} in {store.path}")
    return ticket


def actor_name() -> str:
    """Who is acting from the command line, for the audit log."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"cli:{user}"
