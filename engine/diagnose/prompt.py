"""Diagnosis prompts: the template variables of one ticket, and the rendered (system, user) pair.

Every value a template sees is redacted first and then trimmed to a size budget (redacting first,
so a cut can never leave half a secret that no longer matches). The rendered text is redacted
once more, in case a template author wrote a secret-shaped value into the template itself.
Templates render in the sandboxed, StrictUndefined jinja2 environment of `engine.templates`.
Times are ISO 8601 UTC text: a model reads them more reliably than unix seconds.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable
from typing import Any

import jinja2

from engine import templates
from engine.config.models import Action, Invariant
from engine.config.reads import names_read
from engine.config.validate import LoadedConfig
from engine.diagnose import default_prompts
from engine.diagnose.types import DiagnosisRequest
from engine.durations import format_duration
from engine.errors import ConfigError, ExpressionError
from engine.expr import compile_expr
from engine.redact import Redactor
from engine.store import Event, Ticket
from engine.trim import trim

# Characters of JSON each part of the prompt may take (see engine.trim).
ENTITY_BUDGET = 4_000
OBSERVATIONS_BUDGET = 24_000
EVENTS_BUDGET = 6_000
SIMILAR_BUDGET = 3_000
CONTEXT_BUDGET = 12_000
TICKET_TEXT_BUDGET = 2_000  # the ticket's message and key (both may carry observed text)
MAX_EVENTS = 20
# the engine's own bookkeeping on a ticket (which incident it joined): nothing to diagnose from
UNTOLD_EVENTS = frozenset({"incident", "incident_opened"})
MAX_SIMILAR = 5


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    text = _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


def prompt_context(loaded: LoadedConfig, request: DiagnosisRequest, mode: str, now: float) -> dict[str, Any]:
    """The variables of the prompt templates (exactly `templates.PROMPT_VARIABLES`), redacted and trimmed."""
    config = loaded.config
    redactor = Redactor(loaded.secrets)

    def clean(value: Any, budget: int) -> Any:
        return trim(redactor.value(value), budget)

    names = referenced_observations(request.invariant, config.observations.keys())
    observations = {name: request.observations.get(name) for name in names}
    events = [_event(e) for e in [e for e in request.events if e.kind not in UNTOLD_EVENTS][-MAX_EVENTS:]]
    similar = [_similar(t) for t in list(request.similar_tickets)[:MAX_SIMILAR]]
    values = config.variable_values()
    return {
        "subject": {"name": config.subject.name, "description": config.subject.description},
        "context": clean(subject_context(loaded), CONTEXT_BUDGET),
        "ticket": _ticket(request.ticket, now, lambda text: clean(text, TICKET_TEXT_BUDGET)),
        "entity": None if request.item is None else clean(request.item, ENTITY_BUDGET),
        "invariant": _invariant(request.invariant),
        "observations": clean(observations, OBSERVATIONS_BUDGET),
        # each element trimmed on its own: trimming the list would append a marker string
        # where templates expect a mapping
        "events": [clean(e, EVENTS_BUDGET // MAX_EVENTS) for e in events],
        "similar_tickets": [clean(t, SIMILAR_BUDGET // MAX_SIMILAR) for t in similar],
        "actions": [_action(a) for a in config.actions],
        # what `vars.<name>` in the expressions above stands for
        "vars": {name: {"type": var.type, "value": redactor.value(values[name]), "description": var.description}
                 for name, var in config.vars.items()},
        "mode": mode,
        "now": iso(now),
    }


def render_prompts(loaded: LoadedConfig, request: DiagnosisRequest, mode: str, now: float) -> tuple[str, str]:
    """(system, user) prompts: the config's templates, or the built-in ones when it has none.

    Raises ConfigError naming the template when it cannot be read or rendered.
    """
    variables = prompt_context(loaded, request, mode, now)
    redactor = Redactor(loaded.secrets)
    system = _render(loaded, "system", default_prompts.SYSTEM, variables)
    user = _render(loaded, "ticket", default_prompts.TICKET, variables)
    return redactor.text(system).rstrip() + "\n" + default_prompts.DATA_NOTICE, redactor.text(user)


def subject_context(loaded: LoadedConfig) -> str:
    subject = loaded.config.subject
    if subject.context is not None:
        return subject.context
    if subject.context_file is None:
        return ""
    return _read(loaded, subject.context_file, "subject.context_file")


def referenced_observations(invariant: Invariant, declared: Iterable[str]) -> list[str]:
    """Observations the invariant reads (expressions, message, runbook params), in declared order;
    all of them when it names none (a prompt without data helps nobody)."""
    used = set(names_read(invariant))
    for source in (p for entry in invariant.runbook for p in entry.params.values()):
        if source:
            try:
                used |= compile_expr(source).names
            except ExpressionError:
                continue  # a validated config compiles; nothing to add from a broken one
    if invariant.message:
        try:
            used |= templates.undeclared_names(invariant.message)
        except jinja2.TemplateSyntaxError:
            pass
    names = list(declared)
    chosen = [name for name in names if name in used]
    return chosen or names


# ------------------------------------------------------------------ rendering


def _render(loaded: LoadedConfig, which: str, default: str, variables: dict[str, Any]) -> str:
    prompts = loaded.config.prompts
    inline = getattr(prompts, which)
    rel = getattr(prompts, f"{which}_file")
    if inline is not None:
        source, place = inline, f"prompts.{which}"
    elif rel is not None:
        source, place = _read(loaded, rel, f"prompts.{which}_file"), f"prompts.{which}_file ({rel})"
    else:
        source, place = default, f"the built-in {which} prompt"
    try:
        return templates.render(source, variables)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"{place} of {loaded.file} cannot be rendered: {exc}") from None
    except (TypeError, ValueError, ArithmeticError, AttributeError) as exc:
        raise ConfigError(f"{place} of {loaded.file} failed while rendering: {type(exc).__name__}: {exc}") from None


def _read(loaded: LoadedConfig, rel: str, place: str) -> str:
    path = loaded.resolve(rel)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{place} of {loaded.file}: cannot read {path}: {exc}") from None


# ------------------------------------------------------------------ template values


def _ticket(ticket: Ticket, now: float, clean_text: Callable[[str], str]) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "invariant": ticket.invariant,
        "entity_key": clean_text(ticket.entity_key),
        "labels": dict(ticket.labels),
        "severity": ticket.severity,
        "status": ticket.status,
        "held": ticket.held,
        "first_seen": iso(ticket.first_seen),
        "last_seen": iso(ticket.last_seen),
        "age": format_duration(max(0.0, now - ticket.first_seen)),
        "occurrences": ticket.occurrences,
        "message": clean_text(ticket.message),
        "previous_ticket_id": ticket.previous_ticket_id,
    }


def _invariant(invariant: Invariant) -> dict[str, Any]:
    return {
        "name": invariant.name,
        "description": invariant.description,
        "severity": invariant.severity,
        "expr": invariant.expr,
        "for_each": invariant.for_each,
        "key": invariant.key,
        "labels": dict(invariant.labels),
    }


def _action(action: Action) -> dict[str, Any]:
    return {
        "name": action.name,
        "description": action.description,
        "risk": action.risk,
        "params": action.params,
        "when": action.when,
        "approval": action.approval,
        "cooldown": format_duration(action.cooldown),
        "max_attempts": action.max_attempts,
    }


def _event(event: Event) -> dict[str, Any]:
    return {"at": iso(event.at), "kind": event.kind, "actor": event.actor, "data": dict(event.data)}


def _similar(ticket: Ticket) -> dict[str, Any]:
    resolution = None
    if ticket.resolved_at is not None:
        resolution = f"resolved after {format_duration(max(0.0, ticket.resolved_at - ticket.first_seen))}"
    return {
        "id": ticket.id,
        "entity_key": ticket.entity_key,
        "status": ticket.status,
        "severity": ticket.severity,
        "message": ticket.message,
        "first_seen": iso(ticket.first_seen),
        "resolution": resolution,
    }
