"""Reading opctl's own counters (the engine's Prometheus registry) for `counters:` assertions.

A selector is a counter's sample name, with or without the `opctl_` prefix, optionally with
label matchers: `tickets_opened_total`, `opctl_tickets_opened_total{invariant="node_heartbeat"}`.
Without matchers the samples of every label set are summed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

_SELECTOR = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s*$")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*')
PREFIX = "opctl_"


@dataclass(frozen=True)
class CounterSelector:
    name: str  # full sample name, e.g. opctl_tickets_opened_total
    labels: tuple[tuple[str, str], ...]


def parse_selector(text: str) -> CounterSelector:
    """Raises ValueError with a readable message."""
    match = _SELECTOR.match(text)
    if match is None:
        raise ValueError(f"'{text}' is not a counter selector; write e.g. tickets_opened_total or tickets_opened_total{{invariant=\"x\"}}")
    name, body = match.group(1), match.group(2)
    if not name.startswith(PREFIX):
        name = PREFIX + name
    labels: list[tuple[str, str]] = []
    if body is not None and body.strip():
        for part in _split_matchers(body):
            m = _MATCHER.fullmatch(part)
            if m is None:
                raise ValueError(f"'{part.strip()}' in '{text}' is not a label matcher; write name=\"value\"")
            labels.append((m.group(1), m.group(2).replace('\\"', '"').replace("\\\\", "\\")))
    return CounterSelector(name, tuple(labels))


def _split_matchers(body: str) -> list[str]:
    parts, current, quoted, escaped = [], "", False, False
    for char in body:
        if char == "," and not quoted:
            parts.append(current)
            current = ""
            continue
        current += char
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
    parts.append(current)
    return [p for p in parts if p.strip()]


def counter_names(registry: CollectorRegistry) -> list[str]:
    """Sample names of every counter in the registry (`..._total`)."""
    return sorted(f"{family.name}_total" for family in registry.collect() if family.type == "counter")


def read_counter(registry: CollectorRegistry, selector: CounterSelector) -> float | None:
    """The sum of the matching samples (0 when none yet); None when there is no such counter."""
    if selector.name not in counter_names(registry):
        return None
    wanted = dict(selector.labels)
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == selector.name and all(sample.labels.get(k) == v for k, v in wanted.items()):
                total += sample.value
    return total
