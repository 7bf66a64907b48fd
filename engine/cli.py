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
@click.option("--strict", is_flag=True, help="Every observation an expression reads must be typed (a `shape`, or a source that types it).")
def validate(paths: tuple[str, ...], fmt: str, warnings_as_errors: bool, strict: bool) -> None:
    """Check config files (or every *.yaml under directories) and report all problems."""
    from engine.filekinds import validate_paths

    try:
        problems = validate_paths(paths, strict=strict)
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
    """Show one ticket with its full timeline: diagnosis, proposals, gate decisions, executions."""
    from rich.console import Console

    from engine.runtime import open_store, require_ticket
    from engine.view import record_json, ticket_detail, ticket_json

    with open_store(config) as store:
        ticket = require_ticket(store, ticket_id)
        events = store.events(ticket_id=ticket_id)
        proposals = store.proposals(ticket_id=ticket_id, limit=10_000)
        executions = store.executions(ticket_id=ticket_id, limit=10_000)
        tokens = store.tokens_by_ticket(ticket_id)
    if as_json:
        click.echo(json.dumps({
            **ticket_json(ticket), "snapshot": ticket.snapshot, "events": [record_json(e) for e in events],
            "proposals": [record_json(p) for p in proposals], "executions": [record_json(x) for x in executions],
            "tokens": {"input": tokens[0], "output": tokens[1]},
        }, indent=2, default=str))
    else:
        Console().print(ticket_detail(ticket, events, proposals=proposals, tokens=tokens))


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


# ----------------------------------------------------------------------------- actions


@main.group()
def actions() -> None:
    """List, show, approve and reject proposed actions."""


@actions.command("list")
@_config_option
@click.option("--status", default="all", show_default=True,
              type=click.Choice(["all", "pending", "proposed", "refused", "awaiting_approval", "approved", "rejected",
                                 "expired", "cancelled", "executing", "succeeded", "failed"]),
              help="pending = awaiting approval or approved.")
@click.option("--ticket", "ticket_id", type=int, default=None, help="Only this ticket's proposals.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@user_errors
def actions_list(config: str, status: str, ticket_id: int | None, as_json: bool, limit: int) -> None:
    """List proposals, newest first."""
    from rich.console import Console

    from engine.runtime import open_store
    from engine.view import proposals_table, record_json

    with open_store(config) as store:
        found = store.proposals(status=None if status == "all" else status, ticket_id=ticket_id, limit=limit)
    if as_json:
        click.echo(json.dumps([record_json(p) for p in found], indent=2, default=str))
    else:
        Console().print(proposals_table(found))


@actions.command("show")
@_config_option
@click.argument("proposal_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def actions_show(config: str, proposal_id: int, as_json: bool) -> None:
    """Show one proposal, its gate decision and its executions."""
    from rich.console import Console

    from engine.runtime import open_store, require_proposal
    from engine.view import proposal_detail, record_json

    with open_store(config) as store:
        proposal = require_proposal(store, proposal_id)
        executions = [x for x in store.executions(ticket_id=proposal.ticket_id, limit=10_000) if x.proposal_id == proposal_id]
    if as_json:
        click.echo(json.dumps({**record_json(proposal), "executions": [record_json(x) for x in executions]}, indent=2, default=str))
    else:
        Console().print(proposal_detail(proposal, executions))


def _decide(verb: str) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        func = click.option("--reason", default="", help="Recorded in the audit log.")(func)
        return click.argument("proposal_id", type=int)(_config_option(func))  # type: ignore[no-any-return]

    return decorate


@actions.command("approve")
@_decide("approve")
@user_errors
def actions_approve(config: str, proposal_id: int, reason: str) -> None:
    """Approve a proposal: a running engine runs it on its next tick, after re-checking every gate."""
    from engine.runtime import actor_name, open_store

    with open_store(config) as store:
        proposal = store.approve(proposal_id, actor=actor_name(), reason=reason)
    click.echo(f"proposal #{proposal.id} ({proposal.action}) is approved; it runs on the engine's next tick if every gate still passes")


@actions.command("reject")
@_decide("reject")
@user_errors
def actions_reject(config: str, proposal_id: int, reason: str) -> None:
    """Reject a proposal: it never runs, and its ticket is escalated."""
    from engine.runtime import actor_name, open_store

    with open_store(config) as store:
        proposal = store.reject(proposal_id, actor=actor_name(), reason=reason)
    click.echo(f"proposal #{proposal.id} ({proposal.action}) is rejected; ticket #{proposal.ticket_id} is escalated")


# ----------------------------------------------------------------------------- kill switch, mode


@main.command()
@_config_option
@click.option("--reason", default="", help="Recorded in the audit log.")
@user_errors
def kill(config: str, reason: str) -> None:
    """Stop all acting now (persisted): pending proposals are cancelled; a running engine stops
    acting within one tick. `opctl resume` undoes it."""
    from engine.runtime import actor_name, open_store

    with open_store(config) as store:
        cancelled = store.kill(actor=actor_name(), reason=reason)
    click.echo(f"kill switch is ON; {len(cancelled)} pending proposal(s) cancelled")


@main.command()
@_config_option
@click.option("--reason", default="", help="Recorded in the audit log.")
@user_errors
def resume(config: str, reason: str) -> None:
    """Turn the kill switch off: the engine acts again from its next tick."""
    from engine.runtime import actor_name, open_store

    with open_store(config) as store:
        count = store.resume(actor=actor_name(), reason=reason)
    click.echo(f"kill switch is OFF; {count} ticket(s) will be attempted again")


@main.command()
@click.argument("mode", type=click.Choice(["observe", "approve", "execute"]))
@_config_option
@user_errors
def mode(mode: str, config: str) -> None:
    """Set the acting mode (persisted; overrides the config's `mode`)."""
    from engine.runtime import actor_name, open_store

    with open_store(config) as store:
        store.set_mode(mode, actor=actor_name())
    click.echo(f"mode is {mode}")


# ----------------------------------------------------------------------------- prompt


@main.command()
@_config_option
@click.option("--ticket", "ticket_id", type=int, required=True, help="The ticket whose prompt to render.")
@user_errors
def prompt(config: str, ticket_id: int) -> None:
    """Print the diagnosis prompt (system, then user) of a ticket, from its stored snapshot."""
    from engine.runtime import rendered_prompt

    system, user = rendered_prompt(config, ticket_id)
    click.echo("===== system =====")
    click.echo(system)
    click.echo("===== user =====")
    click.echo(user)


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


def _print_lab_status(status: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(status.as_json(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"lab {status.lab} · {'healthy' if status.healthy else 'running' if status.running else 'down'} · {status.state_dir}")
    for column in ("process", "running", "ready", "pid", "endpoint", "log"):
        table.add_column(column)
    for p in status.processes:
        table.add_row(p.name, "yes" if p.running else "no", "yes" if p.ready else "no", str(p.pid or "-"), p.endpoint or "-", p.log)
    Console().print(table)


@lab.command("up")
@click.argument("config")
@click.option("--json", "as_json", is_flag=True, help="Print the status (endpoints, exports) as JSON.")
@user_errors
def lab_up(config: str, as_json: bool) -> None:
    """Start the lab's processes in order, each healthy before the next."""
    from engine.lab import supervisor

    _print_lab_status(supervisor.up(_lab_spec(config)), as_json)


@lab.command("status")
@click.argument("config")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def lab_status(config: str, as_json: bool) -> None:
    """Show each lab process: running, ready, pid, endpoint."""
    from engine.lab import supervisor

    _print_lab_status(supervisor.status(_lab_spec(config)), as_json)


@lab.command("down")
@click.argument("config")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def lab_down(config: str, as_json: bool) -> None:
    """Stop the processes `lab up` recorded (and only those)."""
    from engine.lab import supervisor

    stopped = supervisor.down(_lab_spec(config))
    if as_json:
        click.echo(json.dumps({"stopped": stopped}))
    else:
        click.echo(f"stopped {len(stopped)} process(es)" + (f": {', '.join(stopped)}" if stopped else ""))


@main.command()
@click.argument("config")
@click.option("--scenario", "scenario_name", default=None, help="The lab scenario to play (see --list).")
@click.option(
    "--mode", type=click.Choice(["observe", "approve", "execute"]), default="execute", show_default=True,
    help="observe: propose only. approve/execute: actions run; those waiting for approval are approved by the "
         "demo itself, standing in for the human (`opctl actions approve`), and the timeline says so.",
)
@click.option("--list", "list_only", is_flag=True, help="List the lab's scenarios and exit.")
@click.option("--interval", default="1s", show_default=True, help="Time between operator ticks.")
@user_errors
def demo(config: str, scenario_name: str | None, mode: str, list_only: bool, interval: str) -> None:
    """Lab up → operator → inject a fault → detect, diagnose, act, verify → lab down.

    The last line is one JSON object {"scenario", "ok", "detected_s", "recovered_s", "actions",
    "mode"}; the exit status is 0 only when the scenario's expectations held."""
    import signal

    from engine.durations import parse_duration
    from engine.lab.demo import DemoSettings, lab_of, run_demo

    if list_only:
        spec = lab_of(config)[1]
        for scenario in spec.lab.scenarios:
            expected = scenario.expect.fires + (f" (then {scenario.expect.action})" if scenario.expect.action else "")
            click.echo(f"{scenario.name:<18} fires {expected}")
            if scenario.description:
                click.echo(f"{'':<18} {' '.join(scenario.description.split())}")
        return
    if scenario_name is None:
        raise click.UsageError("give --scenario NAME (or --list to see them)")
    try:
        period = parse_duration(interval)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--interval") from exc
    # SIGTERM stops the demo like Ctrl-C: the lab still goes down.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    def emit(entry: Any) -> None:
        click.echo(entry.line())
        sys.stdout.flush()

    from engine.errors import LabError

    try:
        result = run_demo(config, scenario_name, mode=mode, emit=emit, settings=DemoSettings(interval=period))
    except LabError as exc:  # the lab could not start: still end with the result line
        click.echo(f"error: {exc}", err=True)
        failed = {"scenario": scenario_name, "ok": False, "detected_s": None, "recovered_s": None, "actions": [], "mode": mode}
        click.echo(json.dumps(failed))
        sys.exit(EXIT_PROBLEMS)
    click.echo(json.dumps(result.as_json()))
    sys.exit(EXIT_OK if result.ok else EXIT_PROBLEMS)


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
            click.echo(entry.line(), err=True)

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
