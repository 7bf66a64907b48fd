"""The `opctl` command line: parse arguments, call the engine, print. Nothing else lives here."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from engine.config.problems import Problem
from engine.errors import OpctlError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


def user_errors(func: F) -> F:
    """Turn an OpctlError (a user's mistake or an unavailable system) into a message and exit 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OpctlError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_PROBLEMS)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="opctl")
def main() -> None:
    """opctl: a declarative operator for distributed systems."""


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--warnings-as-errors", is_flag=True, help="Exit 1 on warnings too.")
def validate(paths: tuple[str, ...], fmt: str, warnings_as_errors: bool) -> None:
    """Check config files (or every *.yaml under directories) and report all problems."""
    from engine.config.validate import validate_paths

    try:
        problems = validate_paths(paths)
    except FileNotFoundError as exc:
        click.echo(f"error: no such file or directory: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    _print_problems(problems, fmt)
    failing = [p for p in problems if p.severity == "error" or warnings_as_errors]
    sys.exit(EXIT_PROBLEMS if failing else EXIT_OK)


def _print_problems(problems: list[Problem], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([p.as_json() for p in problems], indent=2))
        return
    for problem in problems:
        click.echo(problem.as_text())
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    summary = "valid" if not problems else f"{errors} error(s), {warnings} warning(s)"
    click.echo(summary, err=True)


@main.command()
def schema() -> None:
    """Print the JSON Schema of the config language."""
    from engine.config.schema import config_schema_text

    click.echo(config_schema_text(), nl=False)


# ----------------------------------------------------------------------------- run


@main.command()
@click.argument("config")
@click.option("--once", is_flag=True, help="Run one tick and exit.")
@click.option("--interval", default=None, help="Time between ticks (default: the config's), e.g. 5s.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per tick (default when not on a TTY).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None, help="Serve opctl's own /metrics here.")
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, envvar="OPCTL_METRICS_HOST",
    help="Address the metrics server binds (0.0.0.0 inside a container).",
)
@user_errors
def run(config: str, once: bool, interval: str | None, as_json: bool, metrics_port: int | None, metrics_host: str) -> None:
    """Watch a subject: observe, evaluate invariants, keep tickets."""
    import asyncio
    import signal

    from rich.console import Console
    from rich.live import Live

    from engine.durations import parse_duration
    from engine.runtime import open_monitor
    from engine.view import live_view

    period = None
    if interval is not None:
        try:
            period = parse_duration(interval)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--interval") from exc
    monitor = open_monitor(config)
    if metrics_port is not None:
        monitor.metrics.serve(metrics_port, host=metrics_host)
    console = Console()
    json_lines = as_json or not console.is_terminal
    live = None if json_lines else Live(console=console, auto_refresh=False)

    def on_tick(report: Any) -> None:
        if live is None:
            click.echo(json.dumps(report.as_json(), default=str), nl=True)
            sys.stdout.flush()
        else:
            open_tickets = monitor.store.tickets(status="open")
            live.update(live_view(report, open_tickets, monitor.config.subject.name), refresh=True)

    async def main_loop() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await monitor.run(interval=period, stop=stop, on_tick=on_tick, once=once)

    try:
        if live is not None:
            with live:
                asyncio.run(main_loop())
        else:
            asyncio.run(main_loop())
    finally:
        monitor.store.close()


# ----------------------------------------------------------------------------- tickets


@main.group()
def tickets() -> None:
    """List, show and manage tickets."""


def _config_option(func: F) -> F:
    return click.option("--config", "config", required=True, help="The subject's config file.")(func)  # type: ignore[no-any-return]


@tickets.command("list")
@_config_option
@click.option("--status", type=click.Choice(["open", "resolved", "all"]), default="all", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@user_errors
def tickets_list(config: str, status: str, as_json: bool, limit: int) -> None:
    """List tickets, newest first."""
    from rich.console import Console

    from engine.runtime import open_store
    from engine.view import ticket_json, tickets_table

    with open_store(config) as store:
        found = store.tickets(status=None if status == "all" else status, limit=limit)
    if as_json:
        click.echo(json.dumps([ticket_json(t) for t in found], indent=2))
    else:
        Console().print(tickets_table(found))


@tickets.command("show")
@_config_option
@click.argument("ticket_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def tickets_show(config: str, ticket_id: int, as_json: bool) -> None:
    """Show one ticket with its full event timeline."""
    from rich.console import Console

    from engine.runtime import open_store, require_ticket
    from engine.view import event_json, ticket_detail, ticket_json

    with open_store(config) as store:
        ticket = require_ticket(store, ticket_id)
        events = store.events(ticket_id=ticket_id)
    if as_json:
        click.echo(json.dumps({**ticket_json(ticket), "snapshot": ticket.snapshot, "events": [event_json(e) for e in events]}, indent=2, default=str))
    else:
        Console().print(ticket_detail(ticket, events))


def _manual(verb: str) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        return click.argument("ticket_id", type=int)(click.option("--reason", default="", help="Recorded in the audit log.")(_config_option(func)))  # type: ignore[no-any-return]

    return decorate


@tickets.command("resolve")
@_manual("resolve")
@user_errors
def tickets_resolve(config: str, ticket_id: int, reason: str) -> None:
    """Resolve a ticket by hand (it stays resolved even if its entity keeps firing)."""
    _manual_change(config, ticket_id, "resolve", reason)


@tickets.command("hold")
@_manual("hold")
@user_errors
def tickets_hold(config: str, ticket_id: int, reason: str) -> None:
    """Hold a ticket: the engine will not auto-resolve it."""
    _manual_change(config, ticket_id, "hold", reason)


@tickets.command("unhold")
@_manual("unhold")
@user_errors
def tickets_unhold(config: str, ticket_id: int, reason: str) -> None:
    """Release a held ticket."""
    _manual_change(config, ticket_id, "unhold", reason)


def _manual_change(config: str, ticket_id: int, verb: str, reason: str) -> None:
    from engine.runtime import actor_name, open_store, require_ticket

    with open_store(config) as store:
        require_ticket(store, ticket_id)
        getattr(store, verb)(ticket_id, actor=actor_name(), reason=reason)
        ticket = require_ticket(store, ticket_id)
    click.echo(f"ticket #{ticket.id} is {ticket.status}{' (held)' if ticket.held else ''}")
