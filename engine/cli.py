"""The `opctl` command line: parse arguments, call the engine, print. Nothing else lives here.

The grammar every command follows (engine.cli_common): the config is the first positional
argument or `OPCTL_CONFIG`; `--store PATH|URL` wherever a store is read; ids are positional;
listings take `--json` and `--output table|wide|tsv|json`; results on stdout, diagnostics on
stderr; exit 0 ok, 1 problems, 2 usage.
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

import click

from engine.cli_common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    Positional,
    config_argument,
    echo_safe,
    output_option,
    print_json,
    print_listing,
    print_rich,
    resolve_config,
    store_option,
    user_errors,
    warn,
)
from engine.config.files import shown_path
from engine.config.problems import Problem
from engine.safe_text import safe

TICKET_ID = Positional("ticket_id", "ID", click.INT)
PROPOSAL_ID = Positional("proposal_id", "ID", click.INT)
MODES = ("observe", "approve", "execute")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="opctl")
@click.option("--allow-outside", is_flag=True,
              help="Let configs name files (context_file, prompts, lab...) outside their root by absolute path.")
def main(allow_outside: bool) -> None:
    """opctl: a declarative operator for distributed systems."""
    from engine.config.reach import allow_outside as outside

    # for this command only: an in-process caller (tests, CliRunner) keeps its own setting after
    token = outside.set(allow_outside or outside.get())
    click.get_current_context().call_on_close(lambda: outside.reset(token))


# ----------------------------------------------------------------------------- validate, schema


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@click.option("--warnings-as-errors", is_flag=True, help="Exit 1 on warnings too.")
@click.option("--strict", is_flag=True, help="Every observation an expression reads must be typed (a `shape`, or a source that types it).")
@click.option("-v", "--verbose", is_flag=True, help="Also say which files were checked, as what, and what was skipped.")
def validate(paths: tuple[str, ...], fmt: str, as_json: bool, warnings_as_errors: bool, strict: bool, verbose: bool) -> None:
    """Check configs, lab, test and eval files: files, or the opctl documents under directories
    (other YAML, hidden directories, virtual environments and node_modules are skipped)."""
    from engine.documents import Options, check_paths

    try:
        checked = check_paths(paths, options=Options(strict=strict))
    except FileNotFoundError as exc:
        click.echo(f"error: no such file or directory: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    if verbose:
        for file, kind in checked.files:
            click.echo(f"checked {file} ({kind})", err=True)
        for skip in checked.skipped:
            click.echo(f"skipped {skip.path}: {skip.reason}", err=True)
    _print_problems(checked.problems, "json" if as_json else fmt)
    failing = [p for p in checked.problems if p.severity == "error" or warnings_as_errors]
    sys.exit(EXIT_PROBLEMS if failing else EXIT_OK)


def _print_problems(problems: list[Problem], fmt: str) -> None:
    if fmt == "json":
        print_json([p.as_json() for p in problems])
        return
    for problem in problems:
        click.echo(safe(problem.as_text()))
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    click.echo("valid" if not problems else f"{errors} error(s), {warnings} warning(s)")


@main.command()
@click.argument("kind", type=click.Choice(["config", "lab", "test", "eval"]), default="config")
def schema(kind: str) -> None:
    """Print the JSON Schema of the config language (or of lab, test or eval files)."""
    from engine.schemas import schema_text

    click.echo(schema_text(kind), nl=False)


# ----------------------------------------------------------------------------- run


@main.command()
@config_argument(store_suffices=False)
@store_option
@click.option("--once", is_flag=True, help="Run one tick and exit.")
@click.option("--interval", default=None, help="Time between ticks (default: the config's), e.g. 5s.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per tick (default when not on a TTY).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None, help="Serve opctl's own /metrics here.")
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, envvar="OPCTL_METRICS_HOST",
    help="Address the metrics server binds (0.0.0.0 inside a container).",
)
@click.option(
    "--replica-id", default=None, envvar="OPCTL_REPLICA_ID",
    help="This replica's name in the leader lease (default hostname:pid); replicas on one store need distinct ones.",
)
@user_errors
def run(
    config: str, store: str | None, once: bool, interval: str | None, as_json: bool, metrics_port: int | None, metrics_host: str,
    replica_id: str | None,
) -> None:  # fmt: skip
    """Watch a subject: observe, evaluate invariants, keep tickets, act within the gates.

    On a terminal: the live view (mode, kill switch, leader, invariant states, open tickets with
    the command that approves what waits, the last actions). Otherwise one JSON object per tick.
    Replicas on one store: every one observes; only the holder of the leader lease acts."""
    import asyncio
    import signal

    from rich.console import Console
    from rich.live import Live

    from engine.cockpit import gather, mode_info
    from engine.durations import parse_duration
    from engine.runtime import open_monitor
    from engine.store.location import redacted_url
    from engine.view import leader_text, live_view, mode_source

    period = None
    if interval is not None:
        try:
            period = parse_duration(interval)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--interval") from exc
    if replica_id is not None and not replica_id.strip():
        raise click.BadParameter("a replica id cannot be empty", param_hint="--replica-id / OPCTL_REPLICA_ID")
    monitor = open_monitor(config, store, replica=replica_id)
    mode = mode_info(monitor.store, monitor.config.mode)
    if mode.overridden:
        warn(f"acting mode is {mode.mode}, {mode_source(mode)}; `opctl mode --clear` returns to the config's")
    if metrics_port is not None:
        monitor.metrics.serve(metrics_port, host=metrics_host)
    console = Console()
    json_lines = as_json or not console.is_terminal
    live = None if json_lines else Live(console=console, auto_refresh=False)
    # a --store URL is shown with its password masked, as everywhere
    approve = " ".join(["opctl actions approve", shlex.quote(config), *(["--store", shlex.quote(redacted_url(store))] if store else []), "{id}"])

    def on_tick(report: Any) -> None:
        if live is None:
            click.echo(json.dumps(report.as_json(), default=str), nl=True)
            sys.stdout.flush()
        else:
            cockpit = gather(monitor.store, report, subject=monitor.config.subject.name, config_mode=monitor.config.mode,
                             approve=approve, leader=leader_text(report.lease))  # fmt: skip
            live.update(live_view(cockpit, width=console.width, height=console.height), refresh=True)

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


@tickets.command("list")
@config_argument()
@store_option
@click.option("--status", type=click.Choice(["open", "resolved", "all"]), default="all", show_default=True)
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@output_option
@user_errors
def tickets_list(config: str | None, store: str | None, status: str, limit: int, output: str) -> None:
    """List tickets, newest first."""
    from engine.runtime import open_store
    from engine.view import ticket_json, tickets_listing

    with open_store(config, store) as opened:
        found = opened.tickets(status=None if status == "all" else status, limit=limit)
    print_listing(tickets_listing(found), output, lambda: [ticket_json(t) for t in found])


@tickets.command("show")
@config_argument(TICKET_ID)
@store_option
@click.option("--json", "as_json", is_flag=True)
@user_errors
def tickets_show(config: str | None, store: str | None, ticket_id: int, as_json: bool) -> None:
    """Show one ticket with its full timeline: diagnosis, proposals, gate decisions, executions."""
    from engine.runtime import open_store, require_ticket
    from engine.view import record_json, ticket_detail, ticket_json

    with open_store(config, store) as opened:
        ticket = require_ticket(opened, ticket_id)
        events = opened.events(ticket_id=ticket_id)
        proposals = opened.proposals(ticket_id=ticket_id, limit=10_000)
        executions = opened.executions(ticket_id=ticket_id, limit=10_000)
        tokens = opened.tokens_by_ticket(ticket_id)
    if as_json:
        print_json({
            **ticket_json(ticket), "snapshot": ticket.snapshot, "events": [record_json(e) for e in events],
            "proposals": [record_json(p) for p in proposals], "executions": [record_json(x) for x in executions],
            "tokens": {"input": tokens[0], "output": tokens[1]},
        })  # fmt: skip
    else:
        print_rich(ticket_detail(ticket, events, proposals=proposals, tokens=tokens))


def _manual_command(verb: str, help_text: str) -> None:
    @tickets.command(verb, help=help_text)
    @config_argument(TICKET_ID)
    @store_option
    @click.option("--reason", default="", help="Recorded in the audit log.")
    @user_errors
    def command(config: str | None, store: str | None, ticket_id: int, reason: str) -> None:
        from engine.runtime import actor_name, open_store, require_ticket

        with open_store(config, store) as opened:
            require_ticket(opened, ticket_id)
            getattr(opened, verb)(ticket_id, actor=actor_name(), reason=reason)
            ticket = require_ticket(opened, ticket_id)
        click.echo(f"ticket #{ticket.id} is {ticket.status}{' (held)' if ticket.held else ''}")


_manual_command("resolve", "Resolve a ticket by hand (it stays resolved even if its entity keeps firing).")
_manual_command("hold", "Hold a ticket: the engine will not auto-resolve it.")
_manual_command("unhold", "Release a held ticket.")


# ----------------------------------------------------------------------------- incidents


INCIDENT_ID = Positional("incident_id", "ID", click.INT)


@main.group()
def incidents() -> None:
    """List and show incidents: tickets that share a cause, diagnosed once."""


@incidents.command("list")
@config_argument()
@store_option
@click.option("--status", type=click.Choice(["open", "all"]), default="all", show_default=True)
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@output_option
@user_errors
def incidents_list(config: str | None, store: str | None, status: str, limit: int, output: str) -> None:
    """List incidents, newest first, each with its member tickets (lead, muted)."""
    from engine.incident_view import incident_json, incidents_listing
    from engine.runtime import open_store

    with open_store(config, store) as opened:
        found = opened.incidents(open_only=status == "open", limit=limit)
        members = {i.id: opened.incident_tickets(i.id) for i in found}
    by_id = {t.id: t for tickets in members.values() for t in tickets}
    print_listing(incidents_listing(found, by_id), output, lambda: [incident_json(i, members[i.id]) for i in found])


@incidents.command("show")
@config_argument(INCIDENT_ID)
@store_option
@click.option("--json", "as_json", is_flag=True)
@user_errors
def incidents_show(config: str | None, store: str | None, incident_id: int, as_json: bool) -> None:
    """Show one incident: its group, the ticket it is diagnosed through, and every member ticket."""
    from engine.errors import StoreError
    from engine.incident_view import incident_detail, incident_json
    from engine.runtime import open_store

    with open_store(config, store) as opened:
        incident = opened.incident(incident_id)
        if incident is None:
            raise StoreError(f"there is no incident #{incident_id} in {opened.path}")
        members = opened.incident_tickets(incident_id)
    if as_json:
        print_json(incident_json(incident, members))
    else:
        print_rich(incident_detail(incident, members))


# ----------------------------------------------------------------------------- actions


@main.group()
def actions() -> None:
    """List, show, approve and reject proposed actions."""


@actions.command("list")
@config_argument()
@store_option
@click.option("--status", default="all", show_default=True,
              type=click.Choice(["all", "pending", "proposed", "refused", "awaiting_approval", "approved", "rejected",
                                 "expired", "cancelled", "executing", "succeeded", "failed"]),
              help="pending = awaiting approval or approved.")  # fmt: skip
@click.option("--ticket", "ticket_id", type=int, default=None, help="Only this ticket's proposals.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@output_option
@user_errors
def actions_list(config: str | None, store: str | None, status: str, ticket_id: int | None, limit: int, output: str) -> None:
    """List proposals, newest first."""
    from engine.runtime import open_store
    from engine.view import proposals_listing, record_json

    with open_store(config, store) as opened:
        found = opened.proposals(status=None if status == "all" else status, ticket_id=ticket_id, limit=limit)
    print_listing(proposals_listing(found), output, lambda: [record_json(p) for p in found])


@actions.command("show")
@config_argument(PROPOSAL_ID)
@store_option
@click.option("--json", "as_json", is_flag=True)
@user_errors
def actions_show(config: str | None, store: str | None, proposal_id: int, as_json: bool) -> None:
    """Show one proposal, its gate decision and its executions."""
    from engine.runtime import open_store, require_proposal
    from engine.view import proposal_detail, record_json

    with open_store(config, store) as opened:
        proposal = require_proposal(opened, proposal_id)
        executions = [x for x in opened.executions(ticket_id=proposal.ticket_id, limit=10_000) if x.proposal_id == proposal_id]
    if as_json:
        print_json({**record_json(proposal), "executions": [record_json(x) for x in executions]})
    else:
        print_rich(proposal_detail(proposal, executions))


@actions.command("approve")
@config_argument(PROPOSAL_ID)
@store_option
@click.option("--reason", default="", help="Recorded in the audit log.")
@user_errors
def actions_approve(config: str | None, store: str | None, proposal_id: int, reason: str) -> None:
    """Approve a proposal: a running engine runs it on its next tick, after re-checking every gate."""
    from engine.runtime import actor_name, open_store

    with open_store(config, store) as opened:
        proposal = opened.approve(proposal_id, actor=actor_name(), reason=reason)
    click.echo(f"proposal #{proposal.id} ({proposal.action}) is approved; it runs on the engine's next tick if every gate still passes")


@actions.command("reject")
@config_argument(PROPOSAL_ID)
@store_option
@click.option("--reason", default="", help="Recorded in the audit log.")
@user_errors
def actions_reject(config: str | None, store: str | None, proposal_id: int, reason: str) -> None:
    """Reject a proposal: it never runs, and its ticket is escalated."""
    from engine.runtime import actor_name, open_store

    with open_store(config, store) as opened:
        proposal = opened.reject(proposal_id, actor=actor_name(), reason=reason)
    click.echo(f"proposal #{proposal.id} ({proposal.action}) is rejected; ticket #{proposal.ticket_id} is escalated")


# ----------------------------------------------------------------------------- kill switch, mode


@main.command()
@config_argument()
@store_option
@click.option("--reason", default="", help="Recorded in the audit log.")
@user_errors
def kill(config: str | None, store: str | None, reason: str) -> None:
    """Stop all acting now (persisted): pending proposals are cancelled; a running engine stops
    acting within one tick. `opctl resume` undoes it."""
    from engine.runtime import actor_name, open_store

    with open_store(config, store, create=True) as opened:
        cancelled = opened.kill(actor=actor_name(), reason=reason)
    click.echo(f"kill switch is ON; {len(cancelled)} pending proposal(s) cancelled")


@main.command()
@config_argument()
@store_option
@click.option("--reason", default="", help="Recorded in the audit log.")
@user_errors
def resume(config: str | None, store: str | None, reason: str) -> None:
    """Turn the kill switch off: the engine acts again from its next tick."""
    from engine.runtime import actor_name, open_store

    with open_store(config, store) as opened:
        count = opened.resume(actor=actor_name(), reason=reason)
    click.echo(f"kill switch is OFF; {count} ticket(s) will be attempted again")


@main.command()
@config_argument()
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@user_errors
def status(config: str | None, store: str | None, as_json: bool) -> None:
    """Who leads (the replica holding the lease, its fencing token and lease expiry), the mode and
    its source, the kill switch, open tickets and incidents, proposals awaiting approval."""
    from engine.cockpit import store_status
    from engine.config.validate import load_config
    from engine.runtime import open_store
    from engine.view import status_lines

    loaded = load_config(config) if config is not None else None
    with open_store(config, store, loaded=loaded) as opened:
        found = store_status(opened, loaded.config.mode if loaded is not None else "unknown")
    if as_json:
        print_json(found.as_json())
    else:
        for line in status_lines(found):
            echo_safe(line)


@main.command()
@click.argument("args", nargs=-1, metavar="[CONFIG] [observe|approve|execute]")
@click.option("--clear", is_flag=True, help="Drop the persisted mode: the config's `mode` applies again.")
@click.option("--config", "deprecated_config", default=None, hidden=True)
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the mode and its source as JSON.")
@user_errors
def mode(args: tuple[str, ...], clear: bool, deprecated_config: str | None, store: str | None, as_json: bool) -> None:
    """Show the acting mode and where it comes from, set it (persisted in the store; it overrides
    the config's `mode` for every engine on that store), or --clear it.

    Precedence: the mode set here, while set; else the config's `mode:` (observe by default)."""
    from engine.cockpit import mode_info
    from engine.config.validate import load_config
    from engine.runtime import actor_name, open_store, store_exists, store_name, store_path
    from engine.view import mode_source

    values = list(args)
    wanted = values.pop() if values and values[-1] in MODES else None
    if len(values) > 1 or (wanted is not None and clear):
        raise click.UsageError("usage: opctl mode [CONFIG] [observe|approve|execute] | opctl mode [CONFIG] --clear")
    config = resolve_config(values[0] if values else None, deprecated_config, required=store is None)
    loaded = load_config(config) if config is not None else None
    config_mode = loaded.config.mode if loaded is not None else None
    path = store_path(config, store, loaded=loaded)
    if wanted is not None:
        with open_store(config, store, create=True, loaded=loaded) as opened:
            opened.set_mode(wanted, actor=actor_name())
        overrides = f" (overrides the config's {config_mode} until `opctl mode --clear`)" if config_mode not in (None, wanted) else ""
        click.echo(f"mode is {wanted}{overrides}")
        return
    if clear:
        cleared = False
        if store_exists(path):
            with open_store(config, store, loaded=loaded) as opened:
                cleared = opened.clear_mode(actor=actor_name(), then=config_mode)
        click.echo(f"mode is {config_mode or 'the config’s'} (from the config)" + ("" if cleared else "; there was no override"))
        return
    if store_exists(path):
        with open_store(config, store, loaded=loaded) as opened:
            info = mode_info(opened, config_mode or "unknown")
    else:
        info = mode_info(None, config_mode or "unknown")
    if as_json:
        print_json({**info.as_json(), "config_mode": config_mode, "store": store_name(path)})
    elif config_mode is None and info.source == "config":
        click.echo("no mode override in this store: the config's `mode` applies (name the config to see it)")
    else:
        click.echo(f"mode is {info.mode} ({mode_source(info)})")


# ----------------------------------------------------------------------------- silences


@main.group()
def silence() -> None:
    """Silence tickets (Alertmanager's model): matched tickets are recorded, not notified or acted on."""


@silence.command("add")
@config_argument()
@store_option
@click.option("--match", "matches", multiple=True, required=True, metavar="NAME=VALUE|NAME=~REGEX",
              help="invariant, key or severity; repeat for more (all must match).")
@click.option("--duration", required=True, help="How long from its start, e.g. 2h or 30m.")
@click.option("--start", "start_at", type=float, default=None, help="Unix seconds (default: now).")
@click.option("--comment", required=True, help="Why (recorded with the silence).")
@user_errors
def silence_add(config: str | None, store: str | None, matches: tuple[str, ...], duration: str, start_at: float | None,
                comment: str) -> None:  # fmt: skip
    """Add a silence; it takes effect on a running engine's next tick."""
    import time

    from engine.durations import parse_duration, utc_text
    from engine.runtime import actor_name, open_store
    from engine.silences import parse_matcher

    try:
        matchers = [parse_matcher(m) for m in matches]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--match") from exc
    try:
        length = parse_duration(duration)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--duration") from exc
    start = time.time() if start_at is None else start_at
    with open_store(config, store, create=True) as opened:
        added = opened.add_silence(matchers, starts_at=start, ends_at=start + length, actor=actor_name(), comment=comment)
    click.echo(safe(f"silence #{added.id} ({' '.join(m.text() for m in added.matchers)}) until {utc_text(added.ends_at)} UTC"))


@silence.command("list")
@config_argument()
@store_option
@click.option("--all", "show_all", is_flag=True, help="Also expired ones.")
@output_option
@user_errors
def silence_list(config: str | None, store: str | None, show_all: bool, output: str) -> None:
    """List silences, newest first (pending and active; --all: also expired)."""
    import time

    from engine.runtime import open_store
    from engine.view import silences_listing

    now = time.time()
    with open_store(config, store) as opened:
        found = [s for s in opened.silences() if show_all or s.state(now) != "expired"]
    print_listing(silences_listing(found, now), output, lambda: [s.as_json(now) for s in found])


@silence.command("expire")
@config_argument(Positional("silence_id", "ID", click.INT))
@store_option
@user_errors
def silence_expire(config: str | None, store: str | None, silence_id: int) -> None:
    """End a silence now."""
    from engine.runtime import actor_name, open_store

    with open_store(config, store) as opened:
        opened.expire_silence(silence_id, actor=actor_name())
    click.echo(f"silence #{silence_id} has expired")


# ----------------------------------------------------------------------------- serve


@main.command()
@config_argument(store_suffices=False)
@store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (not loopback: needs OPCTL_SERVE_TOKENS).")
@click.option("--port", type=click.IntRange(1, 65535), default=8089, show_default=True)
@user_errors
def serve(config: str, store: str | None, host: str, port: int) -> None:
    """The web console and JSON API (/api/v1) over the store `opctl run` writes. It never acts:
    approvals, the kill switch, the mode and silences are store writes the loop picks up."""
    import os

    from engine.serve import build
    from engine.serve.app import run as run_app

    app = build(config, host=host, env=os.environ, store=store)
    click.echo(f"console on http://{host}:{port}/ (API /api/v1, OpenAPI /api/v1/openapi.json)", err=True)
    run_app(app, host=host, port=port)


# ----------------------------------------------------------------------------- prompt


@main.command()
@config_argument(Positional("ticket_id", "ID", click.INT, old_option="--ticket"), store_suffices=False)
@store_option
@user_errors
def prompt(config: str, store: str | None, ticket_id: int) -> None:
    """Print the diagnosis prompt (system, then user) of a ticket, from its stored snapshot."""
    from engine.runtime import rendered_prompt

    system, user = rendered_prompt(config, ticket_id, store)
    click.echo("===== system =====")
    echo_safe(system)
    click.echo("===== user =====")
    echo_safe(user)


# ----------------------------------------------------------------------------- test


@main.command("test")
@click.argument("paths", nargs=-1, required=True)
@click.option("--run", "run_regex", default=None, help="Only cases whose name matches this regular expression.")
@click.option("--junit", default=None, help="Also write a JUnit XML report to this file.")
@click.option("--property", "property_mode", is_flag=True, help="Also run the property tests (hypothesis).")
def test_command(paths: tuple[str, ...], run_regex: str | None, junit: str | None, property_mode: bool) -> None:
    """Run config unit tests (files, or every test *.yaml under directories) offline."""
    from engine.testing.runner import run_tests

    result = run_tests(list(paths), run_regex=run_regex, junit=junit, property_mode=property_mode)
    click.echo(result.report_text())
    sys.exit(result.exit_code)


# ----------------------------------------------------------------------------- lab, demo


@main.group()
def lab() -> None:
    """Run the subject's local lab (the config's `lab:`): real processes on loopback."""


def _lab_spec(config: str) -> Any:
    from engine.lab.demo import lab_of

    return lab_of(config)[1]


def _print_lab_status(status: Any, output: str) -> None:
    from engine.view import lab_listing

    print_listing(lab_listing(status), output, status.as_json)


@lab.command("up")
@config_argument()
@output_option
@user_errors
def lab_up(config: str, output: str) -> None:
    """Start the lab's processes in order, each healthy before the next."""
    from engine.lab import supervisor

    _print_lab_status(supervisor.up(_lab_spec(config)), output)


@lab.command("status")
@config_argument()
@output_option
@user_errors
def lab_status(config: str, output: str) -> None:
    """Show each lab process: running, ready, pid, endpoint."""
    from engine.lab import supervisor

    _print_lab_status(supervisor.status(_lab_spec(config)), output)


@lab.command("down")
@config_argument()
@click.option("--json", "as_json", is_flag=True)
@user_errors
def lab_down(config: str, as_json: bool) -> None:
    """Stop the processes `lab up` recorded (and only those)."""
    from engine.lab import supervisor

    stopped = supervisor.down(_lab_spec(config))
    if as_json:
        print_json({"stopped": stopped})
    else:
        click.echo(f"stopped {len(stopped)} process(es)" + (f": {', '.join(stopped)}" if stopped else ""))


@main.command()
@config_argument(required=False)
@click.option("--scenario", "scenario_name", default=None, help="The lab scenario to play (see --list).")
@click.option(
    "--mode", type=click.Choice(MODES), default="execute", show_default=True,
    help="observe: propose only. approve/execute: actions run; those waiting for approval are approved by the "
         "demo itself, standing in for the human (`opctl actions approve`), and the timeline says so.",
)  # fmt: skip
@click.option("--list", "list_only", is_flag=True, help="List the scenarios (of every shipped config when none is named).")
@click.option("--interval", default="1s", show_default=True, help="Time between operator ticks.")
@click.option("--lab", "lab_file", default=None, help="Play this lab file instead of the config's `lab:`.")
@output_option
@user_errors
def demo(
    config: str | None, scenario_name: str | None, mode: str, list_only: bool, interval: str, lab_file: str | None, output: str
) -> None:
    """Lab up → operator → inject a fault → detect, diagnose, act, verify → lab down.

    Each run keeps its own store (the audit log) under the lab's state dir and ends by printing
    the command that inspects it, then one JSON object {"scenario", "ok", "detected_s",
    "recovered_s", "actions", "mode"}; the exit status is 0 only when the scenario's expectations
    held. The mode is `execute` unless --mode says otherwise (configs ship in observe: the
    demo's lab is the only place it acts by default)."""
    import signal

    from engine.durations import parse_duration
    from engine.lab.demo import DemoSettings, run_demo

    if list_only:
        _list_scenarios(config, output, lab_file)
        return
    if config is None:
        raise click.UsageError("give the config first (or set OPCTL_CONFIG), then --scenario NAME; --list shows them")
    if scenario_name is None:
        raise click.UsageError("give --scenario NAME (or --list to see them)")
    try:
        period = parse_duration(interval)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--interval") from exc
    # SIGTERM stops the demo like Ctrl-C: the lab still goes down.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    def emit(entry: Any) -> None:
        echo_safe(entry.line())
        sys.stdout.flush()

    from engine.errors import LabError
    from engine.lab.timeline import TimelineEntry

    given = click.get_current_context().get_parameter_source("mode") == click.core.ParameterSource.COMMANDLINE
    emit(TimelineEntry(None, "mode", f"{mode} ({'--mode' if given else 'the demo default; --mode observe|approve to change'}); "
                                     "the demo sets it in its own store, whatever the config says"))
    try:
        result = run_demo(config, scenario_name, mode=mode, emit=emit, settings=DemoSettings(interval=period), lab=lab_file)
    except LabError as exc:  # the lab could not start: still end with the result line
        click.echo(f"error: {safe(exc, multiline=True)}", err=True)
        from engine.lab.demo import DemoResult

        failed = DemoResult(scenario_name, ok=False, detected_s=None, recovered_s=None, actions=[], mode=mode)
        click.echo(json.dumps(failed.as_json()))
        sys.exit(EXIT_PROBLEMS)
    if result.store is not None:
        click.echo(f"inspect this run: opctl tickets list --store {shlex.quote(str(shown_path(result.store)))}")
    click.echo(json.dumps(result.as_json()))
    sys.exit(EXIT_OK if result.ok else EXIT_PROBLEMS)


def _list_scenarios(config: str | None, output: str, lab_file: str | None) -> None:
    from engine.lab.demo import lab_of
    from engine.runtime import shipped_demo_configs
    from engine.view import scenarios_listing

    configs = [config] if config is not None else [str(shown_path(p)) for p in shipped_demo_configs()]
    entries = [(path, scenario) for path in configs for scenario in lab_of(path, lab=lab_file)[1].lab.scenarios]
    if output != "table":
        print_listing(scenarios_listing(entries), output, lambda: [
            {"config": path, "scenario": s.name, "fires": s.expect.fires, "key": s.expect.key, "action": s.expect.action,
             "description": " ".join(s.description.split())}
            for path, s in entries
        ])  # fmt: skip
        return
    for path in configs:
        if config is None:
            click.echo(f"{path}:")
        for _, scenario in (e for e in entries if e[0] == path):
            expected = scenario.expect.fires + (f" (then {scenario.expect.action})" if scenario.expect.action else "")
            click.echo(safe(f"{scenario.name:<18} fires {expected}"))
            if scenario.description:
                click.echo(safe(f"{'':<18} {' '.join(scenario.description.split())}"))


# ----------------------------------------------------------------------------- eval


@main.command("eval")
@click.argument("paths", nargs=-1, required=True)
@click.option("--provider", type=click.Choice(["runbook", "claude", "replay"]), default="runbook", show_default=True,
              help="Who diagnoses: the runbook (offline), Claude (needs ANTHROPIC_API_KEY), or a replay of --from DIR.")
@click.option("--model", default=None, help="The Claude model (default: each config's diagnosis.model).")
@click.option("--repeat", type=click.IntRange(1, 100), default=1, show_default=True, help="Runs per case (run-to-run agreement).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per case, then the totals as the last line.")
@click.option("--record", "record_dir", default=None, help="Save every run (moment, observations, model exchanges) under DIR.")
@click.option("--from", "replay_dir", default=None, help="With --provider replay: the recordings to replay (made with --record).")
@click.option("--judge", "judge_model", default=None, help="Also let this model judge the free text (reported apart).")
@click.option("--run", "run_regex", default=None, help="Only cases whose subject/file/case matches this regular expression.")
@click.option("--verbose", is_flag=True, help="Print the timeline of live cases on stderr.")
def eval_command(paths: tuple[str, ...], provider: str, model: str | None, repeat: int, as_json: bool, record_dir: str | None,
                 replay_dir: str | None, judge_model: str | None, run_regex: str | None, verbose: bool) -> None:
    """Measure diagnosis quality, cost and latency over eval cases (files, or the eval files under directories).

    Each case reaches the moment the engine diagnoses its ticket (live: its lab scenario for real;
    frozen: fixtures over virtual time), the provider diagnoses it --repeat times, and a
    deterministic scorer checks the required and forbidden facts and that the actions are
    acceptable and pass the real gate. Exit 0 when it ran, 1 for problems in eval files or
    recordings, 2 for a usage error.

    Measure Claude live, then replay offline byte for byte:

      ANTHROPIC_API_KEY=... opctl eval subjects/ examples/ --provider claude --record DIR

      opctl eval subjects/ examples/ --provider replay --from DIR
    """
    import os
    from pathlib import Path

    from engine.evals.runner import run_eval
    from engine.evals.runs import API_KEY_VARIABLE, Settings

    live_hint = (
        f"To measure Claude live: {API_KEY_VARIABLE}=<key> opctl eval {' '.join(paths)} --provider claude"
        f"{' --model ' + model if model else ''} --record DIR   (then replay it offline: opctl eval {' '.join(paths)} "
        "--provider replay --from DIR)"
    )
    api_key = os.environ.get(API_KEY_VARIABLE) or None
    if provider == "claude" and api_key is None:
        click.echo(f"error: {API_KEY_VARIABLE} is not set, so Claude cannot be called.\n{live_hint}", err=True)
        sys.exit(EXIT_USAGE)
    if (provider == "replay") != (replay_dir is not None):
        click.echo("error: --from DIR goes with --provider replay (and replay needs it)", err=True)
        sys.exit(EXIT_USAGE)
    if replay_dir is not None and not Path(replay_dir).is_dir():
        click.echo(f"error: --from {replay_dir}: no such directory", err=True)
        sys.exit(EXIT_USAGE)
    if judge_model is not None and api_key is None and provider != "replay":
        click.echo(f"error: --judge needs {API_KEY_VARIABLE} (or --provider replay of a judged recording)", err=True)
        sys.exit(EXIT_USAGE)
    settings = Settings(provider=provider, model=model, repeat=repeat,  # type: ignore[arg-type]
                        record=Path(record_dir) if record_dir else None, replay_from=Path(replay_dir) if replay_dir else None,
                        judge_model=judge_model, api_key=api_key)

    def progress(text: str) -> None:
        if not as_json and not text.endswith("..."):
            click.echo(text)

    def timeline(entry: Any) -> None:
        if verbose:
            echo_safe(entry.line(), err=True)

    result = run_eval(paths, settings, run_regex=run_regex, progress=progress, timeline=timeline)
    if result.usage_error is not None:
        click.echo(f"error: {result.usage_error}", err=True)
        sys.exit(EXIT_USAGE)
    if result.problems:
        _print_problems(list(result.problems), "text")
        sys.exit(EXIT_PROBLEMS)
    report = result.report
    assert report is not None
    if result.written:
        click.echo(f"recorded {len(result.written)} run(s) under {record_dir}", err=True)
    if provider != "claude":
        click.echo(f"{'Replayed' if provider == 'replay' else 'Claude was not called'}. {live_hint}", err=True)
    if as_json:
        for case in report.cases:
            click.echo(json.dumps(case.as_json(), default=str))
        click.echo(report.last_line())
    else:
        click.echo(report.text().rsplit("\n", 1)[-1])
    sys.exit(EXIT_OK)
