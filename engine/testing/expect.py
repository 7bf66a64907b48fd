"""Comparing one case's `expect` with what the engine did; each mismatch is a readable block.

Pure: takes what was observed (`Observed`) and returns failure texts (expected vs actual).
Partial matching by default: a ticket or action matches when every field written matches;
other tickets may exist. `exact: true` asks for the same entries and nothing else. `tickets: []`
always means "no ticket at all".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from engine.evaluate import EntityState
from engine.observe import ObservationResult
from engine.store import Ticket
from engine.testing.actions import ActionRecord
from engine.testing.counters import parse_selector, read_counter
from engine.testing.model import ActionExpect, Expect, TicketExpect

_RANK = {"ok": 0, "pending": 1, "firing": 2}
_SAMPLES = ("error", "unknown")


@dataclass(frozen=True)
class Observed:
    """What the engine had done by the case's tick."""

    states: Mapping[tuple[str, str], EntityState]
    samples: Mapping[tuple[str, str], str]  # (invariant, key) -> "error" | "unknown": this tick's sample
    invariant_names: Sequence[str]
    tickets: Sequence[Ticket]
    observations: Mapping[str, ObservationResult]
    registry: CollectorRegistry
    prompt_for: Callable[[str, str], str]  # (invariant, key) -> rendered prompt text
    actions: Sequence[ActionRecord]  # every proposal so far, oldest first
    inputs_missing: frozenset[str] = frozenset()  # invariants an observation of which failed this tick


def check(expect: Expect, observed: Observed) -> list[str]:
    failures: list[str] = []
    failures += _invariants(expect, observed)
    failures += _observation_errors(expect, observed)
    if expect.tickets is not None:
        failures += _tickets(expect.tickets, observed.tickets, exact=expect.exact)
    failures += _counters(expect, observed)
    failures += _prompts(expect, observed)
    failures += _actions(expect, observed)
    return failures


# --------------------------------------------------------------------------- invariants


def _entity_states(observed: Observed, invariant: str) -> dict[str, str]:
    return {key: state.status for (inv, key), state in observed.states.items() if inv == invariant}


def _samples(observed: Observed, invariant: str) -> dict[str, str]:
    return {key: sample for (inv, key), sample in observed.samples.items() if inv == invariant}


def _invariants(expect: Expect, observed: Observed) -> list[str]:
    """`error` and `unknown` are this tick's sample of an entity (its evaluation failed, an
    observation it reads failed); ok, pending and firing are its status (held through errors)."""
    out = []
    for name, wanted in expect.invariants.items():
        states = _entity_states(observed, name)
        samples = _samples(observed, name)
        if isinstance(wanted, str):
            if wanted in _SAMPLES:
                missing = wanted == "unknown" and name in observed.inputs_missing  # even with no entity
                if wanted not in samples.values() and not missing:
                    out.append(f"invariants.{name}: expected an entity in state {wanted}, got none"
                               f"{_listing(samples or states)}")
                continue
            actual = max(states.values(), key=_RANK.__getitem__, default="ok")
            if actual != wanted:
                out.append(f"invariants.{name}: expected {wanted}, got {actual}{_listing(states)}")
            continue
        wanted_text = {str(k): v for k, v in wanted.items()}
        for key, status in wanted_text.items():
            if status in _SAMPLES:
                got = samples.get(key)
                if got != status:
                    out.append(f"invariants.{name}[{key!r}]: expected {status}, got {got or states.get(key, 'ok')}"
                               f"{_listing(samples or states)}")
                continue
            actual = states.get(key, "ok")
            if actual != status:
                absent = "" if key in states else " (no such entity: absent counts as ok)"
                out.append(f"invariants.{name}[{key!r}]: expected {status}, got {actual}{absent}{_listing(states)}")
        if expect.exact:
            extra = {k: v for k, v in states.items() if k not in wanted_text and v != "ok"}
            if extra:
                out.append(f"invariants.{name}: exact: entities not listed are not ok: {_format_states(extra)}")
    return out


def _listing(states: Mapping[str, str]) -> str:
    unsettled = {k: v for k, v in states.items() if v != "ok"}
    return f"\n    entities not ok: {_format_states(unsettled)}" if unsettled else ""


def _format_states(states: Mapping[str, str]) -> str:
    return ", ".join(f"{k or '(cluster)'}={v}" for k, v in sorted(states.items()))


# --------------------------------------------------------------------------- observations


def _observation_errors(expect: Expect, observed: Observed) -> list[str]:
    out = []
    for name, wanted in expect.observation_errors.items():
        result = observed.observations.get(name)
        failed = result is not None and not result.ok
        actual = f"failed: {result.error}" if failed and result is not None else "succeeded"
        if wanted is True and not failed:
            out.append(f"observation_errors.{name}: expected the observation to fail, it {actual}")
        elif wanted is False and failed:
            out.append(f"observation_errors.{name}: expected the observation to succeed, it {actual}")
        elif isinstance(wanted, str) and not (failed and result is not None and wanted in (result.error or "")):
            out.append(f"observation_errors.{name}: expected an error containing {wanted!r}, it {actual}")
    return out


# --------------------------------------------------------------------------- tickets

_TICKET_FIELDS = ("invariant", "key", "status", "severity", "labels", "message", "message_contains", "occurrences", "held")


def _ticket_value(ticket: Ticket, name: str) -> Any:
    return {
        "invariant": ticket.invariant, "key": ticket.entity_key, "status": ticket.status,
        "severity": ticket.severity, "labels": ticket.labels, "message": ticket.message,
        "message_contains": ticket.message, "occurrences": ticket.occurrences, "held": ticket.held,
    }[name]


def _ticket_differences(wanted: TicketExpect, ticket: Ticket, *, exact: bool) -> list[str]:
    diffs = []
    for name in _TICKET_FIELDS:
        expected = getattr(wanted, name)
        if expected is None:
            continue
        actual = _ticket_value(ticket, name)
        if name == "message_contains":
            if expected not in actual:
                diffs.append(f"message: expected to contain {expected!r}, got {actual!r}")
        elif name == "labels" and not exact:
            for label, value in expected.items():
                if actual.get(label) != value:
                    diffs.append(f"labels.{label}: expected {value!r}, got {actual.get(label)!r}")
        elif name == "status" and expected == "open":
            # as in the store: `open` is every status but resolved (diagnosing, proposed, escalated...)
            if not ticket.is_open:
                diffs.append(f"status: expected 'open' (not resolved), got {actual!r}")
        elif actual != expected:
            diffs.append(f"{name}: expected {expected!r}, got {actual!r}")
    return diffs


def _describe_ticket(ticket: Ticket) -> str:
    labels = f" labels={ticket.labels}" if ticket.labels else ""
    return (
        f"#{ticket.id} {ticket.invariant}[{ticket.entity_key!r}] {ticket.status}{' held' if ticket.held else ''} "
        f"severity={ticket.severity} occurrences={ticket.occurrences}{labels} message={ticket.message!r}"
    )


def _describe_expected(wanted: TicketExpect) -> str:
    parts = [f"{name}: {getattr(wanted, name)!r}" for name in _TICKET_FIELDS if getattr(wanted, name) is not None]
    return "{" + ", ".join(parts) + "}"


def _tickets(expected: Sequence[TicketExpect], actual: Sequence[Ticket], *, exact: bool) -> list[str]:
    listing = "\n".join(f"      {_describe_ticket(t)}" for t in actual) or "      (none)"
    if not expected:
        if actual:
            return [f"tickets: expected none, got {len(actual)}:\n{listing}"]
        return []
    problems = []
    unused = list(actual)
    for index, wanted in enumerate(expected):
        match = next((t for t in unused if not _ticket_differences(wanted, t, exact=exact)), None)
        if match is not None:
            unused.remove(match)
            continue
        line = f"tickets[{index}]: no ticket matches {_describe_expected(wanted)}"
        if unused:
            closest = min(unused, key=lambda t: len(_ticket_differences(wanted, t, exact=exact)))
            diffs = "; ".join(_ticket_differences(wanted, closest, exact=exact))
            line += f"\n    closest: #{closest.id}: {diffs}"
        problems.append(line)
    if exact and unused:
        problems.append("tickets: exact: tickets not expected:\n" + "\n".join(f"      {_describe_ticket(t)}" for t in unused))
    if problems and not (exact and unused):
        problems[-1] += f"\n    actual tickets:\n{listing}"
    return problems


# --------------------------------------------------------------------------- counters


def _counters(expect: Expect, observed: Observed) -> list[str]:
    out = []
    for text, wanted in expect.counters.items():
        value = read_counter(observed.registry, parse_selector(text))
        if value is None:
            out.append(f"counters.{text}: there is no such counter")
        elif value != wanted:
            out.append(f"counters.{text}: expected {_number(wanted)}, got {_number(value)}")
    return out


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# --------------------------------------------------------------------------- prompts


def _prompts(expect: Expect, observed: Observed) -> list[str]:
    out = []
    for wanted in expect.prompts:
        label = f"prompts[{wanted.invariant}{'/' + wanted.key if wanted.key else ''}]"
        try:
            text = observed.prompt_for(wanted.invariant, wanted.key)
        except LookupError as exc:
            out.append(f"{label}: {exc}")
            continue
        missing = [t for t in wanted.contains if t not in text]
        present = [t for t in wanted.not_contains if t in text]
        if missing or present:
            lines = [f"{label}:"]
            lines += [f"    expected to contain {t!r}" for t in missing]
            lines += [f"    expected not to contain {t!r}" for t in present]
            excerpt = text if len(text) <= 1500 else text[:1500] + f"\n... ({len(text) - 1500} more characters)"
            lines.append("    rendered prompt:\n" + "\n".join(f"      | {line}" for line in excerpt.splitlines()))
            out.append("\n".join(lines))
    return out


# --------------------------------------------------------------------------- actions


def _action_differences(wanted: ActionExpect, record: ActionRecord, *, exact: bool) -> list[str]:
    diffs = []
    for name in ("action", "status", "invariant", "key", "gate"):
        expected = getattr(wanted, name)
        if expected is not None and getattr(record, name) != expected:
            diffs.append(f"{name}: expected {expected!r}, got {getattr(record, name)!r}")
    if wanted.params is not None:
        diffs += [f"params{d}" for d in _value_differences(wanted.params, record.params, exact=exact)]
    if wanted.reason_contains is not None and wanted.reason_contains not in (record.reason or ""):
        diffs.append(f"reason: expected to contain {wanted.reason_contains!r}, got {record.reason!r}")
    if wanted.request is not None:
        if record.request is None:
            diffs.append(f"request: expected {wanted.request!r}, but nothing was sent (status {record.status})")
        else:
            diffs += [f"request{d}" for d in _value_differences(wanted.request, record.request, exact=False, exact_below=exact)]
    return diffs


def _value_differences(expected: Any, actual: Any, *, exact: bool, exact_below: bool | None = None, path: str = "") -> list[str]:
    """Where `actual` differs from `expected`: mappings match on the keys written (all keys when
    `exact`), anything else by equality. `exact_below` applies from the next level down."""
    below = exact if exact_below is None else exact_below
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key, value in expected.items():
            if key not in actual:
                out.append(f"{path}.{key}: expected {value!r}, got nothing")
            else:
                out += _value_differences(value, actual[key], exact=below, path=f"{path}.{key}")
        if exact:
            out += [f"{path}.{key}: not expected, got {actual[key]!r}" for key in actual if key not in expected]
        return out
    if expected != actual or isinstance(expected, bool) != isinstance(actual, bool):  # True == 1 in Python, not here
        return [f"{path}: expected {expected!r}, got {actual!r}"]
    return []


def _describe_action(record: ActionRecord) -> str:
    parts = [f"{record.action} {record.status} params={record.params} for {record.invariant}[{record.key!r}] (ticket #{record.ticket})"]
    if record.gate:
        parts.append(f"gate={record.gate}")
    if record.reason:
        parts.append(f"reason={record.reason!r}")
    if record.request is not None:
        parts.append(f"request={record.request['line']!r}" + (f" body={record.request['body']!r}" if record.request.get("body") is not None else ""))
    return " ".join(parts)


def _actions(expect: Expect, observed: Observed) -> list[str]:
    if expect.actions is None and not expect.not_actions:
        return []
    records = list(observed.actions)
    listing = "\n".join(f"      {_describe_action(r)}" for r in records) or "      (none)"
    out = []
    for name in expect.not_actions:
        handled = [r for r in records if r.action == name]
        if handled:
            out.append(f"not_actions: {name} was proposed ({', '.join(r.status for r in handled)}); actual actions:\n{listing}")
    if expect.actions is None:
        return out
    if not expect.actions:
        return out + ([f"actions: expected none, got {len(records)}:\n{listing}"] if records else [])
    unused = list(records)
    for index, wanted in enumerate(expect.actions):
        match = next((r for r in unused if not _action_differences(wanted, r, exact=expect.exact)), None)
        if match is not None:
            unused.remove(match)
            continue
        line = f"actions[{index}]: no action matches {_describe_wanted(wanted)}"
        if unused:
            # the same action first, then the fewest differences; ties go to the newest record
            closest = min(
                reversed(unused),
                key=lambda r: (r.action != wanted.action, len(_action_differences(wanted, r, exact=expect.exact))),
            )
            line += f"\n    closest: {closest.action} (ticket #{closest.ticket}): " + "; ".join(_action_differences(wanted, closest, exact=expect.exact))
        out.append(line + f"\n    actual actions:\n{listing}")
    if expect.exact and unused:
        out.append("actions: exact: actions not expected:\n" + "\n".join(f"      {_describe_action(r)}" for r in unused))
    return out


def _describe_wanted(wanted: ActionExpect) -> str:
    return "{" + ", ".join(f"{k}: {v!r}" for k, v in wanted.model_dump(exclude_none=True).items()) + "}"
