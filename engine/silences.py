"""Silences, Alertmanager's model: matchers on a ticket's invariant, key and severity, a start,
an end, an author and a comment. A silenced ticket is recorded as usual, but neither notified nor
acted on while the silence is active.

    silence = Silence(id=1, matchers=(Matcher("invariant", "node_heartbeat"),), starts_at=t0, ends_at=t1, ...)
    silence.mutes({"invariant": "node_heartbeat", "key": "node2", "severity": "critical"}, now)  # True

`parse_matcher("key=~node[12]")` reads the `name=value` / `name=~regex` text the CLI takes (a
value may be JSON-quoted: `key="~literal"`). Silences are one source of muting; inhibitions are the other (same `mutes` protocol).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MATCHER_NAMES = ("invariant", "key", "severity")
STATES = ("pending", "active", "expired")


@dataclass(frozen=True)
class Matcher:
    """`name` equals `value`, or (`regex`) fully matches it as a regular expression."""

    name: str
    value: str
    regex: bool = False

    def __post_init__(self) -> None:
        if self.name not in MATCHER_NAMES:
            raise ValueError(f"unknown matcher name {self.name!r}; use one of {', '.join(MATCHER_NAMES)}")
        if self.regex:
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"matcher {self.name}=~{self.value}: not a regular expression ({exc})") from None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        return re.fullmatch(self.value, actual) is not None if self.regex else actual == self.value

    def text(self) -> str:
        """`name=value` / `name=~regex`; the value JSON-quoted when it would read back otherwise."""
        value = self.value
        if value != value.strip() or value[:1] in ('"', "~") or "\n" in value or "\r" in value:
            value = json.dumps(value)
        return f"{self.name}{'=~' if self.regex else '='}{value}"

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "regex": self.regex}


def parse_matcher(text: str) -> Matcher:
    """`invariant=node_heartbeat`, `key=~node[12]`; ValueError with a message naming the text."""
    found = re.fullmatch(r"\s*([a-z_]+)\s*(=~|=)(.*)", text, re.DOTALL)
    if found is None:
        raise ValueError(f"matcher {text!r}: write NAME=VALUE or NAME=~REGEX, NAME one of {', '.join(MATCHER_NAMES)}")
    name, op, value = found.groups()
    if value.startswith('"'):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"matcher {text!r}: a quoted value must be one JSON string") from None
        if not isinstance(value, str):
            raise ValueError(f"matcher {text!r}: a quoted value must be one JSON string")
    return Matcher(name, value, regex=op == "=~")


@dataclass(frozen=True)
class Silence:
    """One silence; `ends_at` is moved to the moment it was expired by hand."""

    id: int
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float

    def state(self, now: float) -> str:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        """Active now and every matcher matches (a silence without matchers matches nothing)."""
        return self.state(now) == "active" and bool(self.matchers) and all(m.matches(labels) for m in self.matchers)

    def as_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id, "matchers": [m.as_json() for m in self.matchers], "starts_at": self.starts_at,
            "ends_at": self.ends_at, "created_by": self.created_by, "comment": self.comment,
            "created_at": self.created_at, "state": self.state(now),
        }  # fmt: skip


def ticket_labels(invariant: str, key: str, severity: str) -> dict[str, str]:
    """What a silence's matchers see of a ticket."""
    return {"invariant": invariant, "key": key, "severity": severity}


def silencing(silences: Iterable[Silence], labels: Mapping[str, str], now: float) -> Silence | None:
    """The first active silence that mutes these labels, if any."""
    return next((s for s in silences if s.mutes(labels, now)), None)
