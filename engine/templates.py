"""jinja2 for config authors: one sandboxed environment, strict about undefined names.

Ticket messages and diagnosis prompts are written by config authors and rendered with observed
values (which may carry hostile text), so rendering happens in jinja2's ImmutableSandboxedEnvironment
with StrictUndefined: an unknown name is an error, never an empty string.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Names a ticket `message` template sees, besides every observation by name, `prev` and `vars`.
MESSAGE_VARIABLES = frozenset({"item", "key", "invariant", "severity", "labels", "now"})

# Names a diagnosis prompt template sees (built by engine.diagnose).
PROMPT_VARIABLES = frozenset(
    {
        "subject",
        "context",
        "ticket",
        "entity",
        "invariant",
        "observations",
        "events",
        "similar_tickets",
        "actions",
        "vars",
        "mode",
        "now",
    }
)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, sort_keys=True, default=str)


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tojson"] = _tojson
    return env


def undeclared_names(source: str) -> set[str]:
    """Names a template reads from its context; raises jinja2.TemplateSyntaxError."""
    return set(_undeclared_names(source))


@lru_cache(maxsize=512)
def _undeclared_names(source: str) -> frozenset[str]:
    # parsed once per text: every validation of a config checks all of its templates again
    return frozenset(meta.find_undeclared_variables(environment().parse(source)))


@lru_cache(maxsize=512)
def _compiled(source: str) -> jinja2.Template:
    return environment().from_string(source)


def render(source: str, variables: dict[str, Any]) -> str:
    """Render a template; raises jinja2.TemplateError (including UndefinedError)."""
    return _compiled(source).render(**variables)
