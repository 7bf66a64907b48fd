"""The demo's live timeline: what happened, in words, with seconds since the fault was injected.

    entry = from_event(event, injected_at)     # a store Event → TimelineEntry, or None (noise)
    line = entry.line()                        # "  +6.2s  detected   node_heartbeat/node2 ..."

Entries come from two places: the demo itself (lab up, settled, injected, approved, recovered,
cleanup, lab down) and the operator's own audit log (the store's events: pending, firing,
diagnosis, proposals, gate refusals, executions, verification), so the timeline shows exactly
what the engine recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.event_text import describe
from engine.observe.values import one_line
from engine.store import Event

MAX_TEXT = 200  # characters of one line's text; details stay in `opctl tickets show`


@dataclass(frozen=True)
class TimelineEntry:
    """One line of the timeline; `at_s` is seconds since injection (negative before, None: no clock)."""

    at_s: float | None
    kind: str
    text: str

    def line(self) -> str:
        when = "" if self.at_s is None else f"{self.at_s:+.1f}s"
        return f"{when:>8}  {self.kind:<10} {self.text}"

    def as_json(self) -> dict[str, Any]:
        return {"at_s": None if self.at_s is None else round(self.at_s, 2), "kind": self.kind, "text": self.text}


def since(at: float, injected_at: float | None) -> float | None:
    return None if injected_at is None else at - injected_at


def from_event(event: Event, injected_at: float | None) -> TimelineEntry | None:
    """The timeline line of one engine event; None for events that only add noise."""
    described = describe(event)
    if described is None:
        return None
    kind, text = described
    return TimelineEntry(since(event.at, injected_at), kind, one_line(text, MAX_TEXT))
