"""The parts every `opctl` command shares: one grammar for the config argument, `--store`, the
output formats, exit codes and printing. engine/cli.py builds its commands from these.

    @main.command()
    @config_argument(Positional("ticket_id", "ID", click.INT))   # opctl tickets show [CONFIG] ID
    @store_option                                                # --store PATH|URL
    @output_option                                               # --json / --output table|wide|tsv|json
    @user_errors
    def tickets_show(config: str | None, store: str | None, ticket_id: int, output: str) -> None: ...

The config is the first positional argument, or `OPCTL_CONFIG` when it is left out. A command
that only reads or writes the store also works from `--store` alone. The old spelling
`--config C` still works for one release and prints a deprecation note.

Results go to stdout, diagnostics (warnings, deprecations, errors) to stderr. Exit codes: 0 ok,
1 problems (a user's mistake in a file, an unavailable system, a failed demo), 2 usage.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.measure import Measurement

from engine.errors import OpctlError
from engine.safe_text import safe

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
CONFIG_ENV = "OPCTL_CONFIG"
OUTPUTS = ("table", "wide", "tsv", "json")


def user_errors(func: F) -> F:
    """Turn an OpctlError (a user's mistake or an unavailable system) into a message and exit 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OpctlError as exc:
            click.echo(f"error: {safe(exc, multiline=True)}", err=True)
            sys.exit(EXIT_PROBLEMS)

    return wrapper  # type: ignore[return-value]


def warn(message: str) -> None:
    click.echo(f"warning: {safe(message)}", err=True)


# ----------------------------------------------------------------------------- the config


@dataclass(frozen=True)
class Positional:
    """A positional argument after the config (e.g. a ticket id); `old_option` is the option
    that gave it before (`--ticket`), still accepted for one release with a deprecation note."""

    name: str
    metavar: str
    type: click.ParamType = click.STRING
    old_option: str | None = None


def config_argument(*after: Positional, required: bool = True, store_suffices: bool = True) -> Callable[[F], F]:
    """`[CONFIG] AFTER...`: the config first (or from OPCTL_CONFIG), then the given arguments.

    The command gets `config` and each argument converted by its type. `config` is None only
    when not `required`, or when `store_suffices` and the command was given `--store`."""
    metavar = " ".join(["[CONFIG]", *(p.metavar for p in after)])

    def decorate(func: F) -> F:
        @wraps(func)
        def wrapper(*args: Any, positionals: tuple[str, ...], deprecated_config: str | None, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            old = {p.name: kwargs.pop(f"old_{p.name}") for p in after if p.old_option is not None}
            wanted = [p for p in after if old.get(p.name) is None]
            values = list(positionals)
            if len(values) == len(wanted) + 1:
                given: str | None = values.pop(0)
            elif len(values) == len(wanted):
                given = None
            else:
                raise click.UsageError(f"expected {metavar}, got {len(values)} argument(s)")
            for positional in after:
                if old.get(positional.name) is not None:
                    warn(f"`{positional.old_option} {positional.metavar}` is deprecated and goes away in the next release; "
                         f"give it as an argument: {ctx.command_path} [CONFIG] {old[positional.name]}")  # fmt: skip
                    kwargs[positional.name] = old[positional.name]
                else:
                    kwargs[positional.name] = positional.type.convert(values.pop(0), None, ctx)
            needed = required and not (store_suffices and kwargs.get("store") is not None)
            kwargs["config"] = resolve_config(given, deprecated_config, required=needed)
            return func(*args, **kwargs)

        command = click.argument("positionals", nargs=-1, metavar=metavar)(wrapper)
        command = click.option(
            "--config", "deprecated_config", default=None, hidden=True, help="Deprecated: give the config first."
        )(command)
        for positional in after:
            if positional.old_option is not None:
                command = click.option(positional.old_option, f"old_{positional.name}", type=positional.type, hidden=True)(command)
        return command  # type: ignore[no-any-return]

    return decorate


def resolve_config(given: str | None, deprecated: str | None, *, required: bool = True) -> str | None:
    """The config path: the positional one, else `--config` (deprecated), else OPCTL_CONFIG."""
    ctx = click.get_current_context()
    if deprecated is not None:
        if given is not None:
            raise click.UsageError("the config is given twice (as an argument and with --config)")
        warn(f"`--config C` is deprecated and goes away in the next release; give the config first: {ctx.command_path} {deprecated} ...")
        return deprecated
    if given is not None:
        return given
    from_env = os.environ.get(CONFIG_ENV) or None
    if from_env is None and required:
        raise click.UsageError(f"give the subject's config as the first argument, or set {CONFIG_ENV}")
    return from_env


def store_option(func: F) -> F:
    """`--store PATH|URL`: the ticket store to read or write instead of the config's `store:`."""
    return click.option(  # type: ignore[no-any-return]
        "--store", "store", default=None, metavar="PATH|URL",
        help="The ticket store (a path, sqlite:///PATH or postgresql://user:pass@host:port/db) instead of the config's `store:`; enough on its own.",
    )(func)


# ----------------------------------------------------------------------------- output


def output_option(func: F) -> F:
    """`--json` and `--output table|wide|tsv|json`; the command gets `output`."""

    @wraps(func)
    def wrapper(*args: Any, as_json: bool, output: str | None, **kwargs: Any) -> Any:
        if as_json and output not in (None, "json"):
            raise click.UsageError(f"--json and --output {output} contradict each other")
        return func(*args, output="json" if as_json else (output or "table"), **kwargs)

    command = click.option("--json", "as_json", is_flag=True, help="JSON (the same as --output json).")(wrapper)
    command = click.option(
        "--output", "-o", "output", type=click.Choice(OUTPUTS), default=None,
        help="table (fitted to the terminal; never cut when piped), wide (every column), tsv, json.",
    )(command)
    return command  # type: ignore[no-any-return]


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def print_listing(listing: Any, output: str, as_json: Callable[[], Any]) -> None:
    """A `engine.view.Listing` in the chosen output; `as_json` builds the JSON form."""
    if output == "json":
        print_json(as_json())
    elif output == "tsv":
        click.echo(listing.tsv())
    else:
        console = Console()
        if output == "table" and console.is_terminal:
            console.print(listing.table(width=console.width))
        else:
            print_natural(listing.table(wide=output == "wide"))


def print_natural(renderable: Any) -> None:
    """Print at the renderable's natural width: nothing wrapped, cut or padded to a terminal."""
    probe = Console(width=100_000)
    width = Measurement.get(probe, probe.options, renderable).maximum
    console = Console(width=max(width, 20))
    with console.capture() as captured:
        console.print(renderable)
    for line in captured.get().splitlines():
        click.echo(line.rstrip())


def print_rich(renderable: Any) -> None:
    """A detail view: fitted to the terminal on a TTY, at its natural width when piped."""
    console = Console()
    if console.is_terminal:
        console.print(renderable)
    else:
        print_natural(renderable)


def echo_safe(text: str, *, err: bool = False) -> None:
    """A line that carries observed text (a demo timeline line, a rendered prompt), escaped."""
    click.echo(safe(text, multiline=True), err=err)
