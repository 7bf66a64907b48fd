"""Building the engine's parts from a config path (shared by the CLI commands)."""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from engine.config.validate import load_config
from engine.errors import ConfigError, StoreError
from engine.store import Proposal, Store, Ticket

if TYPE_CHECKING:
    from engine.loop import Monitor


def open_monitor(config_path: str) -> Monitor:
    # imported here: the loop brings the observers, actors and their clients (redis, httpx),
    # about 0.3 s that the commands reading the store do not need
    from engine.loop import Monitor

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


def require_proposal(store: Store, proposal_id: int) -> Proposal:
    proposal = store.proposal(proposal_id)
    if proposal is None:
        raise StoreError(f"there is no proposal #{proposal_id} in {store.path}")
    return proposal


def rendered_prompt(config_path: str, ticket_id: int) -> tuple[str, str]:
    """The (system, user) diagnosis prompts of a stored ticket, built from its snapshot (the
    observations that fired it), its events and earlier tickets; offline."""
    from engine.diagnose import DiagnosisRequest, render_prompts

    loaded = load_config(config_path)
    with Store(loaded.store_path) as store:
        ticket = require_ticket(store, ticket_id)
        invariant = loaded.config.invariant(ticket.invariant)
        if invariant is None:
            raise ConfigError(f"ticket #{ticket_id} is for invariant {ticket.invariant!r}, which {config_path} no longer declares")
        observations = {k: v for k, v in ticket.snapshot.items() if k != "item"}
        request = DiagnosisRequest(
            ticket=ticket, invariant=invariant, item=ticket.snapshot.get("item"), key=ticket.entity_key,
            observations=observations, events=store.events(ticket_id),
            similar_tickets=store.similar_tickets(ticket.invariant, exclude=ticket_id),
        )
        mode = store.mode_override() or loaded.config.mode
    return render_prompts(loaded, request, mode, time.time())


def actor_name() -> str:
    """Who is acting from the command line, for the audit log."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"cli:{user}"
