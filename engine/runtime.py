"""Building the engine's parts from a config path (shared by the CLI commands)."""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from engine.cockpit import mode_info
from engine.config.validate import LoadedConfig, load_config
from engine.errors import ConfigError, StoreError
from engine.store import Proposal, Store, Ticket
from engine.store.location import redacted_url, store_location

if TYPE_CHECKING:
    from engine.loop import Monitor


def store_path(config_path: str | None, store: str | None = None, *, loaded: LoadedConfig | None = None) -> Path | str:
    """Where the store is: `--store` when given, else the config's `store:`; a SQLite file (a
    Path) or a PostgreSQL URL (engine.store.location; an unknown scheme is a StoreError)."""
    if store is not None:
        return store_location(store)
    if loaded is None:
        if config_path is None:
            raise ConfigError("no store given: name the config (or set OPCTL_CONFIG), or give --store PATH|URL")
        loaded = load_config(config_path)
    return store_location(loaded.store_path)


def store_exists(at: Path | str) -> bool:
    """A file exists or not; a database is there to connect to (opening it says when it is not)."""
    return not isinstance(at, Path) or at.exists()


def store_name(at: Path | str) -> str:
    """The store as output shows it: the file, or the URL with its password masked."""
    return str(at) if isinstance(at, Path) else redacted_url(at)


def default_replica_id() -> str:
    """hostname:pid: unique among the replicas of one store."""
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def open_monitor(config_path: str, store: str | None = None, *, replica: str | None = None) -> Monitor:
    """The engine of `opctl run`: one replica, competing for the store's leader lease."""
    # imported here: the loop brings the observers, actors and their clients (redis, httpx),
    # about 0.3 s that the commands reading the store do not need
    from engine.loop import Monitor

    loaded = load_config(config_path)
    return Monitor(loaded, store=Store(store_path(config_path, store, loaded=loaded)), replica=replica or default_replica_id())


@contextmanager
def open_store(
    config_path: str | None, store: str | None = None, *, create: bool = False, loaded: LoadedConfig | None = None
) -> Iterator[Store]:
    """The store of `config_path` (or `--store`). Only commands that write switches create it: a
    command that reads finds one or says where it looked."""
    path = store_path(config_path, store, loaded=loaded)
    if not create and not store_exists(path):
        run = f"opctl run {config_path}" if config_path else "opctl run CONFIG"
        raise StoreError(f"no store at {path} yet: run `{run}` first")
    opened = Store(path)
    try:
        yield opened
    finally:
        opened.close()


def require_ticket(store: Store, ticket_id: int) -> Ticket:
    ticket = store.ticket(ticket_id)
    if ticket is None:
        raise StoreError(f"there is no ticket #{ticket_id} in {store.location}")
    return ticket


def require_proposal(store: Store, proposal_id: int) -> Proposal:
    proposal = store.proposal(proposal_id)
    if proposal is None:
        raise StoreError(f"there is no proposal #{proposal_id} in {store.location}")
    return proposal


def rendered_prompt(config_path: str, ticket_id: int, store_at: str | None = None) -> tuple[str, str]:
    """The (system, user) diagnosis prompts of a stored ticket, built from its snapshot (the
    observations that fired it), its events and earlier tickets; offline."""
    from engine.diagnose import DiagnosisRequest, render_prompts

    loaded = load_config(config_path)
    with open_store(config_path, store_at, loaded=loaded) as store:
        ticket = require_ticket(store, ticket_id)
        invariant = loaded.config.invariant(ticket.invariant, ticket.entity_key)
        if invariant is None:
            raise ConfigError(f"ticket #{ticket_id} is for invariant {ticket.invariant!r}, which {config_path} no longer declares")
        observations = {k: v for k, v in ticket.snapshot.items() if k != "item"}
        request = DiagnosisRequest(
            ticket=ticket, invariant=invariant, item=ticket.snapshot.get("item"), key=ticket.entity_key,
            observations=observations, events=store.events(ticket_id),
            similar_tickets=store.similar_tickets(ticket.invariant, exclude=ticket_id),
        )
        mode = mode_info(store, loaded.config.mode).mode
    return render_prompts(loaded, request, mode, time.time())


def actor_name() -> str:
    """Who is acting from the command line, for the audit log."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"cli:{user}"


def shipped_demo_configs() -> list[Path]:
    """The shipped configs that name a lab (`configs/*.yaml`, `examples/*/*.yaml`): of the checkout
    this opctl runs from, else of the current directory."""
    import yaml

    root = Path(__file__).resolve().parents[1]
    if not (root / "configs").is_dir():
        root = Path.cwd()
    found = []
    for path in [*sorted((root / "configs").glob("*.yaml")), *sorted((root / "examples").glob("*/*.yaml"))]:
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and "subject" in data and data.get("lab"):
            found.append(path)
    return found
