"""Muting: why a ticket is recorded only (not diagnosed, notified or acted on), or None.

One protocol, several sources (as in Alertmanager, where inhibitions and silences are both a
`Muter`): each source answers `mutes(ticket, context)` with a reason or None, and `muted_by`
asks them in order. Inhibition is the first source: an invariant's `inhibited_by` names
invariants (or `target_up`) that, while one of their entities fires, mute its tickets; a
target's `inhibited_by` does the same for its `target_up` tickets. Silences
are the second (matchers with a window, in the store). A new kind of muting is one more class
with `mutes` and one more entry in `muters_of`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from engine.config.models import TARGET_UP, Config
from engine.config.reads import targets_read
from engine.evaluate import EntityState, StateMap
from engine.silences import Silence, silencing, ticket_labels
from engine.store import Ticket

LISTED_KEYS = 3  # firing keys named in a reason


@dataclass(frozen=True)
class MuteContext:
    """What a muting source may look at.

    Attributes:
        firing: the firing entity keys per invariant this tick.
        episodes: per invariant, (key, fired at, resolved at or None) of its recent tickets.
        violated_since: when each (invariant, key) entity's current violation began (pending).
        now: the tick's time.
    """

    firing: Mapping[str, tuple[str, ...]]
    now: float
    episodes: Mapping[str, tuple[tuple[str, float, float | None], ...]] = field(default_factory=dict)
    violated_since: Mapping[tuple[str, str], float] = field(default_factory=dict)

    @classmethod
    def of(cls, states: Mapping[tuple[str, str], EntityState], now: float,
           episodes: Sequence[tuple[str, str, float, float | None]] = ()) -> MuteContext:
        unsettled = states.unsettled if isinstance(states, StateMap) else states
        firing: dict[str, list[str]] = {}
        since: dict[tuple[str, str], float] = {}
        for (invariant, key), state in unsettled.items():
            if state.status == "firing":
                firing.setdefault(invariant, []).append(key)
            if state.active_since is not None:
                since[(invariant, key)] = state.active_since
        by_invariant: dict[str, list[tuple[str, float, float | None]]] = {}
        for invariant, key, started, ended in episodes:
            by_invariant.setdefault(invariant, []).append((key, started, ended))
        return cls({name: tuple(sorted(keys)) for name, keys in firing.items()}, now,
                   {name: tuple(sorted(e)) for name, e in by_invariant.items()}, since)


@dataclass(frozen=True)
class Cause:
    """What inhibits a ticket: an invariant and its entities that fire (or fired while the
    ticket's violation began: `while_began`)."""

    invariant: str
    keys: tuple[str, ...]
    while_began: bool


class Muter(Protocol):
    def mutes(self, ticket: Ticket, context: MuteContext) -> str | None:
        """Why this source mutes the ticket now, or None."""


class Inhibition:
    """`inhibited_by`: while one of the named invariants fires, the invariant (or a target's
    `target_up`) only records."""

    def __init__(self, config: Config) -> None:
        self.inhibitors = {inv.name: tuple(inv.inhibited_by) for inv in config.invariants if inv.inhibited_by}
        self.target_inhibitors = {name: tuple(t.inhibited_by) for name, t in config.targets.items() if t.inhibited_by}
        # `target_up` mutes an invariant only for the targets it reads: a dead Prometheus is no
        # cause of a violation seen through another target
        self.targets_read = {inv.name: targets_read(inv, config.observations) for inv in config.invariants}

    def mutes(self, ticket: Ticket, context: MuteContext) -> str | None:
        found = self.cause(ticket, context)
        if found is None:
            return None
        if found.while_began:
            return f"inhibited by {found.invariant} (fired for {_listed(found.keys)} while this violation began)"
        return f"inhibited by {found.invariant} (firing for {_listed(found.keys)})"

    def cause(self, ticket: Ticket, context: MuteContext) -> Cause | None:
        """The first inhibitor that mutes this ticket now, with its entities; None when none does."""
        began = context.violated_since.get((ticket.invariant, ticket.entity_key), ticket.first_seen)
        inhibitors = self.target_inhibitors.get(ticket.entity_key, ()) if ticket.invariant == TARGET_UP \
            else self.inhibitors.get(ticket.invariant, ())
        for name in inhibitors:
            relevant = self._relevant(ticket.invariant, name)
            keys = tuple(k for k in context.firing.get(name, ()) if relevant(k))
            if keys:
                return Cause(name, keys, while_began=False)
            # a symptom whose violation began while its cause fired is that cause's, even when
            # its own `for` makes it fire just after the cause resolved
            overlapping = tuple(key for key, fired, resolved in context.episodes.get(name, ())
                                if relevant(key) and fired <= context.now and (resolved is None or resolved >= began))
            if overlapping:
                return Cause(name, overlapping, while_began=True)
        return None

    def _relevant(self, invariant: str, inhibitor: str) -> Callable[[str], bool]:
        if inhibitor != TARGET_UP:
            return lambda key: True
        targets = self.targets_read.get(invariant, frozenset())
        return lambda key: key in targets

    def invariants(self) -> list[str]:
        """The inhibiting invariants, whose recent tickets the context needs."""
        every = (*self.inhibitors.values(), *self.target_inhibitors.values())
        return sorted({name for names in every for name in names})


def _listed(keys: Sequence[str]) -> str:
    listed = ", ".join(repr(k) if k else "the cluster" for k in keys[:LISTED_KEYS])
    return listed + (f" and {len(keys) - LISTED_KEYS} more" if len(keys) > LISTED_KEYS else "")


class Silences:
    """Silences (engine.silences, kept in the store): an active silence whose every matcher
    matches the ticket's invariant, key and severity mutes it. Made with `opctl silence add` or
    the console, so they are read from the store (once per tick: `now` changes each tick)."""

    def __init__(self, store: SilenceSource) -> None:
        self.store = store
        self._read: tuple[float, list[Silence]] | None = None

    def mutes(self, ticket: Ticket, context: MuteContext) -> str | None:
        if self._read is None or self._read[0] != context.now:
            self._read = (context.now, self.store.silences(active_at=context.now))
        found = silencing(self._read[1], ticket_labels(ticket.invariant, ticket.entity_key, ticket.severity), context.now)
        if found is None:
            return None
        return f"silenced by #{found.id} ({' '.join(m.text() for m in found.matchers)}; {found.created_by}: {found.comment})"


class SilenceSource(Protocol):
    def silences(self, *, active_at: float | None = None, limit: int = 1000) -> list[Silence]: ...


def muters_of(config: Config, store: SilenceSource | None = None) -> list[Muter]:
    """Every muting source of a config (and its store's silences), in the order they are asked."""
    return [Inhibition(config), *([Silences(store)] if store is not None else [])]


def muted_by(ticket: Ticket, context: MuteContext, muters: Sequence[Muter]) -> str | None:
    """The first reason a source gives to mute the ticket, or None: it is not muted."""
    for muter in muters:
        reason = muter.mutes(ticket, context)
        if reason is not None:
            return reason
    return None
