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
