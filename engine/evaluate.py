"""Invariant evaluation: the per-entity state machine and the evaluator that feeds it.

Pure: no I/O and no clock reads; the caller passes `now`. One function, `advance`, holds every
state transition (as Prometheus' `AlertingRule.Eval` does); `Evaluator.evaluate` turns one
tick's observations into samples per entity and runs `advance`.

Samples: `healthy` and `violated` (the expression gave true or false), `error` (the expression,
its `for_each`, `key` or `resolve_when` failed to evaluate, or gave a non-bool: a defect of the
expression or of the data's type) and `unknown` (an observation the invariant reads failed or was
not made this tick: there is nothing to judge). Both `error` and `unknown` follow the invariant's
`on_error` in the state machine, in the same way.

States: ok → pending (violated, `for` not yet elapsed) → firing → ok again ("resolved") once the
entity has stayed recovered for `keep_firing_for`. A pending entity that turns healthy goes back
to ok ("cleared") without ever having fired. An error or unknown sample follows `on_error`:
`keep` changes nothing but `last_error` (no timer moves, so a ticket never resolves on an
observation failure or an evaluation error), `firing` counts as violated, `ok` as healthy.
While firing, "recovered" means healthy and, when `resolve_when` is set, that CEL is true too;
any other sample cancels a running keep_firing_for countdown (hysteresis).

Report: `InvariantReport.counts` has one count per entity and tick in exactly one of `ok`,
`pending`, `firing`, `unknown`, `error`: an entity whose sample was `error` or `unknown` counts
there (whatever its held status), never as ok; `errors` and `unknown` name those entities (key
-> reason; the cluster-wide entity's key is "").

Cost: a tick calls each per-entity expression once per item and runs the state machine only for
items that are not healthy and entities that are not plainly ok; plainly ok entities are kept as
one list of keys per invariant (`StateMap`), never as one object each.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import compress, repeat
from operator import is_not
from typing import TYPE_CHECKING, Any, Literal

from engine.config.models import Config, Invariant
from engine.errors import ExpressionEvalError
from engine.expr import CompiledExpr, compile_expr

if TYPE_CHECKING:  # evaluation reads only .ok, .value and .error of a result
    from engine.observe import ObservationResult

Status = Literal["ok", "pending", "firing"]
Sample = Literal["healthy", "violated", "error", "unknown"]
COUNTED = ("ok", "pending", "firing", "unknown", "error")  # the keys of InvariantReport.counts
TransitionKind = Literal["pending", "firing", "resolved", "cleared"]

# Names the engine binds itself; everything else an expression reads is an observation.
_ENGINE_NAMES = frozenset({"item", "now", "prev", "vars"})
CLUSTER_KEY = ""


@dataclass(frozen=True)
class EntityState:
    """Where one (invariant, entity key) stands. Times are unix seconds.

    Attributes:
        status: ok, pending or firing.
        active_since: when the current violation began (start of pending); None when ok.
        fired_at: when it started firing; None unless firing.
        cleared_since: firing but recovered since then (the keep_firing_for countdown).
        last_error: the latest error sample's reason; None after a non-error sample.
        last_change: when `status` last changed.
    """

    status: Status
    active_since: float | None = None
    fired_at: float | None = None
    cleared_since: float | None = None
    last_error: str | None = None
    last_change: float = 0.0


# An entity that has only ever been healthy; shared because most entities are in this state.
OK = EntityState("ok")


@dataclass(frozen=True)
class Transition:
    """A change of status; `cleared` is a pending violation that ended before firing (no ticket)."""

    invariant: str
    key: str
    before: Status
    after: Status
    at: float
    kind: TransitionKind


def advance(
    state: EntityState | None,
    sample: Sample,
    now: float,
    inv: Invariant,
    *,
    resolve_ok: bool = True,
    error: str | None = None,
    key: str = "",
) -> tuple[EntityState, Transition | None]:
    """The next state of one entity after one sample at `now`, and the transition if any.

    `resolve_ok` is the value of `resolve_when` (True when the invariant has none); `error` is
    the reason of an error or unknown sample; `key` only labels the transition.
    """
    if state is None:
        state = OK
    if sample == "error" or sample == "unknown":
        policy = inv.on_error
        if policy == "keep":
            if state.last_error == error:
                return state, None
            return replace(state, last_error=error), None
        sample = "violated" if policy == "firing" else "healthy"
        resolve_ok = True  # `on_error: ok` means the user takes an error as full recovery
    else:
        error = None  # a real sample clears the last error

    status = state.status
    if status == "ok":
        if sample == "healthy":
            return _with_error(state, error), None
        if inv.hold <= 0:
            return _fire(inv, key, now, now, "ok", error)
        new = EntityState("pending", active_since=now, last_error=error, last_change=now)
        return new, Transition(inv.name, key, "ok", "pending", now, "pending")

    if status == "pending":
        if sample == "healthy":
            new = EntityState("ok", last_error=error, last_change=now)
            return new, Transition(inv.name, key, "pending", "ok", now, "cleared")
        active_since = state.active_since if state.active_since is not None else now
        if now - active_since >= inv.hold:
            return _fire(inv, key, active_since, now, "pending", error)
        return _with_error(state, error), None

    # firing
    if sample == "healthy" and resolve_ok:
        cleared_since = state.cleared_since if state.cleared_since is not None else now
        if now - cleared_since >= inv.keep_firing_for:
            new = EntityState("ok", last_error=error, last_change=now)
            return new, Transition(inv.name, key, "firing", "ok", now, "resolved")
        if cleared_since == state.cleared_since and state.last_error == error:
            return state, None
        return replace(state, cleared_since=cleared_since, last_error=error), None
    if state.cleared_since is None and state.last_error == error:
        return state, None
    return replace(state, cleared_since=None, last_error=error), None


def _fire(
    inv: Invariant, key: str, active_since: float, now: float, before: Status, error: str | None
) -> tuple[EntityState, Transition]:
    new = EntityState("firing", active_since=active_since, fired_at=now, last_error=error, last_change=now)
    return new, Transition(inv.name, key, before, "firing", now, "firing")


def _with_error(state: EntityState, error: str | None) -> EntityState:
    return state if state.last_error == error else replace(state, last_error=error)


class StateMap(Mapping[tuple[str, str], EntityState]):
    """The state of every known entity, keyed by (invariant, entity key); read-only.

    Most entities are plainly ok, so those are held as one list of keys per invariant (built in
    bulk, no per-entity objects) and only the others as EntityState values in `unsettled`.
    Behaves as a read-only dict: `get`, `[]`, `in`, `len`, `items()`.
    """

    __slots__ = ("_ok", "_ok_sets", "unsettled", "_len")

    def __init__(self, ok: Mapping[str, list[str]], unsettled: dict[tuple[str, str], EntityState]) -> None:
        self._ok = dict(ok)  # invariant -> keys that are OK (a key also in `unsettled` is not)
        self._ok_sets: dict[str, set[str]] = {}
        self.unsettled = unsettled  # every entity whose state is not the plain OK
        self._len: int | None = None

    def _ok_set(self, invariant: str) -> set[str]:
        found = self._ok_sets.get(invariant)
        if found is None:
            found = self._ok_sets[invariant] = set(self._ok.get(invariant, ()))
        return found

    def __getitem__(self, sk: tuple[str, str]) -> EntityState:
        state = self.unsettled.get(sk)
        if state is not None:
            return state
        if sk[1] in self._ok_set(sk[0]):
            return OK
        raise KeyError(sk)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        yield from self.unsettled
        for invariant, keys in self._ok.items():
            for key in keys:
                if (invariant, key) not in self.unsettled:
                    yield invariant, key

    def __len__(self) -> int:
        if self._len is None:
            self._len = sum(1 for _ in self)
        return self._len

    def keys_of(self, invariant: str) -> Iterator[str]:
        """Every known key of one invariant."""
        for inv, key in self.unsettled:
            if inv == invariant:
                yield key
        unsettled = self.unsettled
        for key in self._ok.get(invariant, ()):
            if (invariant, key) not in unsettled:
                yield key

    def __repr__(self) -> str:
        return f"StateMap({dict(self.items())!r})"

    def with_invariant(self, name: str, ok: list[str], unsettled: Mapping[tuple[str, str], EntityState]) -> StateMap:
        """This map plus the states of one more invariant (evaluated elsewhere, e.g. target_up)."""
        return StateMap({**self._ok, name: ok}, {**self.unsettled, **unsettled})


# --------------------------------------------------------------------------- evaluation results


@dataclass(frozen=True)
class Entity:
    """One evaluated entity, for messages, tickets and prompts; `item` is None cluster-wide."""

    invariant: str
    key: str
    item: Any


@dataclass(frozen=True)
class InvariantReport:
    """How one invariant's evaluation went this tick.

    Attributes:
        name: the invariant.
        health: `err` when an observation it reads failed or any CEL evaluation failed.
        error: the first error (and how many more), None when healthy.
        counts: entities per state this tick, every key of COUNTED: {"ok": n, "pending": n,
            "firing": n, "unknown": n, "error": n}; each entity is in exactly one.
        errors: entity key -> why its evaluation failed (the `error` entities).
        unknown: entity key -> which observation it reads failed (the `unknown` entities).
        inputs_missing: an observation it reads failed or was not made: there was nothing to
            judge, so the invariant as a whole is `unknown` (even with no known entity).
    """

    name: str
    health: Literal["ok", "err"]
    error: str | None
    counts: dict[str, int]
    errors: dict[str, str]
    unknown: dict[str, str]
    inputs_missing: bool = False

    @property
    def state(self) -> str:
        """The invariant's state in one word, worst first: firing, pending, unknown (its inputs
        are missing: never ok), error (an evaluation failed), ok."""
        if self.counts.get("firing"):
            return "firing"
        if self.counts.get("pending"):
            return "pending"
        if self.inputs_missing or self.counts.get("unknown"):
            return "unknown"
        if self.health == "err" or self.counts.get("error"):
            return "error"
        return "ok"


@dataclass(frozen=True)
class Evaluation:
    """The outcome of one tick.

    Attributes:
        states: the new full state map, keyed by (invariant, entity key) (a read-only mapping).
        transitions: every status change of this tick, in evaluation order.
        entities: the current item of every pending or firing entity and of every entity that
            transitioned (the last known item, or None, when the entity is gone or unobserved).
        reports: one per invariant, by name.
    """

    states: StateMap
    transitions: list[Transition]
    entities: dict[tuple[str, str], Entity]
    reports: dict[str, InvariantReport]


# --------------------------------------------------------------------------- the evaluator


@dataclass(frozen=True)
class _Compiled:
    inv: Invariant
    for_each: CompiledExpr | None
    key: CompiledExpr | None
    expr: CompiledExpr
    resolve_when: CompiledExpr | None
    observations: tuple[str, ...]  # observations this invariant reads (its error handling)


class _Tally:
    """Mutable per-invariant bookkeeping during one evaluate() call."""

    __slots__ = ("pending", "firing", "total", "errors", "failed", "unknown", "inputs_missing")

    def __init__(self) -> None:
        self.pending = 0
        self.firing = 0
        self.total = 0
        self.errors: list[str] = []  # every problem of this tick, for `health` and `error`
        self.failed: dict[str, str] = {}  # entities whose sample was `error`
        self.unknown: dict[str, str] = {}  # entities whose sample was `unknown`
        self.inputs_missing = False  # an observation it reads failed: nothing to judge

    def count(self, status: str, count_total: bool = True, sample: Sample | None = None,
              key: str = "", reason: str | None = None) -> None:
        self.total += count_total
        if sample == "error":
            self.failed[key] = reason or "evaluation failed"
        elif sample == "unknown":
            self.unknown[key] = reason or "an observation failed"
        elif status == "firing":
            self.firing += 1
        elif status == "pending":
            self.pending += 1

    def report(self, name: str) -> InvariantReport:
        error = None
        if self.errors:
            more = len(self.errors) - 1
            error = self.errors[0] + (f" (and {more} more error(s))" if more else "")
        counts = {"ok": self.total - self.pending - self.firing - len(self.failed) - len(self.unknown),
                  "pending": self.pending, "firing": self.firing, "unknown": len(self.unknown),
                  "error": len(self.failed)}
        return InvariantReport(name, "err" if self.errors else "ok", error, counts, self.failed, self.unknown,
                               self.inputs_missing)


class Evaluator:
    """Evaluates every invariant of a config against one tick's observations.

    Every expression is compiled once here. Invariants that share the same `for_each` and `key`
    sources are evaluated in one pass over the list, so each item's key is computed once.
    """

    def __init__(self, config: Config) -> None:
        observation_names = frozenset(config.observations)
        self._vars = config.variable_values()
        self._compiled: list[_Compiled] = []
        for inv in config.invariants:
            exprs = [compile_expr(inv.expr)]
            for_each = compile_expr(inv.for_each) if inv.for_each is not None else None
            key = compile_expr(inv.key) if inv.key is not None else None
            resolve_when = compile_expr(inv.resolve_when) if inv.resolve_when is not None else None
            exprs += [e for e in (for_each, key, resolve_when) if e is not None]
            used = frozenset().union(*(e.names for e in exprs)) & observation_names
            self._compiled.append(_Compiled(inv, for_each, key, exprs[0], resolve_when, tuple(sorted(used))))

    def evaluate(
        self,
        observations: Mapping[str, ObservationResult],
        previous: Mapping[str, Any],
        states: Mapping[tuple[str, str], EntityState],
        now: float,
    ) -> Evaluation:
        """One tick: samples for every entity of every invariant, run through `advance`."""
        with _no_collection_pauses():
            env: dict[str, Any] = {name: r.value for name, r in observations.items() if r.ok}
            env["prev"] = previous if isinstance(previous, dict) else dict(previous)
            env["now"] = now
            env["vars"] = self._vars
            run = _Run(states, now)
            groups: dict[tuple[str, str], list[_Compiled]] = {}
            for c in self._compiled:
                failure = _observation_failure(c, observations)
                if failure is not None:
                    run.fail_invariant(c, failure, "unknown")
                elif c.for_each is None:
                    run.cluster_wide(c, env)
                else:
                    groups.setdefault((c.inv.for_each or "", c.inv.key or ""), []).append(c)
            for members in groups.values():
                run.per_entity(members, env)
            return Evaluation(
                states=StateMap(run.ok_keys, run.unsettled),
                transitions=run.transitions,
                entities=run.entities,
                reports={c.inv.name: run.tally_of(c.inv.name).report(c.inv.name) for c in self._compiled},
            )


@contextmanager
def _no_collection_pauses() -> Iterator[None]:
    """A tick allocates a few objects per entity, short-lived and without cycles; with the cyclic
    collector on, its allocation counts trigger full collections mid-tick that scan every live
    state, which grows faster than the entity count (100k entities: about an eighth of the tick).
    Paused for the tick, collected as usual after it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _observation_failure(c: _Compiled, observations: Mapping[str, ObservationResult]) -> str | None:
    reasons = []
    for name in c.observations:
        result = observations.get(name)
        if result is None:
            reasons.append(f"observation '{name}' was not made this tick")
        elif not result.ok:
            reasons.append(f"observation '{name}' failed: {result.error}")
    return "; ".join(reasons) if reasons else None


def _key_text(value: Any) -> str | None:
    if value.__class__ is str:
        return value  # type: ignore[no-any-return]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return str(value)


def _kind(value: Any) -> str:
    return {bool: "bool", int: "int", float: "double", str: "string", list: "list", dict: "map"}.get(
        type(value), type(value).__name__
    ) if value is not None else "null"


class _Run:
    """One evaluate() call: new states, transitions, entities and tallies being built.

    Per-entity invariants are evaluated in two phases so the common case costs one call per
    (item, invariant): first every item's key and expression values, keeping only the values
    that are not `true`; then the state machine runs only for those and for entities already
    known to be other than plain ok; every other present entity goes into the invariant's list
    of ok keys as a whole.
    """

    def __init__(self, states: Mapping[tuple[str, str], EntityState], now: float) -> None:
        self.states = states
        self.now = now
        self.ok_keys: dict[str, list[str]] = {}  # per invariant, keys whose new state is OK
        self.unsettled: dict[tuple[str, str], EntityState] = {}  # every other new state
        self.transitions: list[Transition] = []
        self.entities: dict[tuple[str, str], Entity] = {}
        self.tally: dict[str, _Tally] = {}
        # entities that are not plain ok, by invariant and key: the only ones with state to carry
        self.known: dict[str, dict[str, EntityState]] = {}
        carried = states.unsettled if isinstance(states, StateMap) else states
        for sk, state in carried.items():
            if state is not OK:
                self.known.setdefault(sk[0], {})[sk[1]] = state

    def tally_of(self, name: str) -> _Tally:
        tally = self.tally.get(name)
        if tally is None:
            tally = self.tally[name] = _Tally()
        return tally

    def _record(
        self,
        name: str,
        key: str,
        item: Any,
        new: EntityState,
        transition: Transition | None,
        *,
        listed: bool = False,
        sample: Sample | None = None,
        reason: str | None = None,
    ) -> None:
        """Keep the new state of one entity; `listed`: its key is already in ok_keys[name];
        `sample` and `reason` count an error or unknown sample in the report."""
        sk = (name, key)
        if transition is not None:
            self.transitions.append(transition)
            self.entities[sk] = Entity(name, key, item)
        elif new.status != "ok":
            self.entities[sk] = Entity(name, key, item)
        elif new.last_error is None:
            new = OK  # settled: forget when it last changed, so the next tick takes the fast path
        if new is OK:
            if not listed:
                self.ok_keys.setdefault(name, []).append(key)
        else:
            self.unsettled[sk] = new
        self.tally_of(name).count(new.status, not listed, sample, key, reason)

    def step(
        self, c: _Compiled, key: str, item: Any, sample: Sample, *, resolve_ok: bool = True, error: str | None = None
    ) -> None:
        """Advance one (unlisted) entity and record everything that follows from it."""
        state = self.states.get((c.inv.name, key))
        new, transition = advance(state, sample, self.now, c.inv, resolve_ok=resolve_ok, error=error, key=key)
        self._record(c.inv.name, key, item, new, transition, sample=sample, reason=error)

    # ------------------------------------------------------------------ failures

    def fail_invariant(self, c: _Compiled, reason: str, sample: Sample) -> None:
        """An observation it reads failed (`unknown`) or for_each did (`error`): every known
        entity gets that sample."""
        name = c.inv.name
        self.tally_of(name).errors.append(reason)
        self.tally_of(name).inputs_missing = sample == "unknown"
        if c.for_each is None:
            self.step(c, CLUSTER_KEY, None, sample, error=reason)
            return
        keep = c.inv.on_error == "keep"
        states = self.states
        if isinstance(states, StateMap):
            keys: Iterator[str] | list[str] = states.keys_of(name)
        else:
            keys = [key for inv_name, key in states if inv_name == name]
        for key in keys:
            if keep and states.get((name, key)) is OK:
                # the report carries the error; a plain ok entity has no timer to keep
                self._record(name, key, None, OK, None, sample=sample, reason=reason)
                continue
            self.step(c, key, None, sample, error=reason)

    # ------------------------------------------------------------------ cluster-wide

    def cluster_wide(self, c: _Compiled, env: dict[str, Any]) -> None:
        sample, error = self._sample(c, CLUSTER_KEY, _value(c.expr, env))
        resolve_ok = True
        state = self.states.get((c.inv.name, CLUSTER_KEY))
        if sample == "healthy" and c.resolve_when is not None and state is not None and state.status == "firing":
            resolve_ok, sample, error = self._resolve_ok(c, env, CLUSTER_KEY)
        self.step(c, CLUSTER_KEY, None, sample, resolve_ok=resolve_ok, error=error)

    # ------------------------------------------------------------------ per entity

    def per_entity(self, members: list[_Compiled], env: dict[str, Any]) -> None:
        """Invariants sharing one for_each and key: one pass over the items."""
        first = members[0]
        assert first.for_each is not None and first.key is not None
        items, problem = self._items(first, env)
        if problem is not None:
            for c in members:
                self.fail_invariant(c, f"invariant '{c.inv.name}': {problem}", "error")
            return

        # phase 1: keys, and the values that are not `true`
        item_env = dict(env)  # one env for the whole pass; only `item` changes per element
        raw_keys = _values(first.key, item_env, items)
        not_true: list[list[tuple[int, Any]]] = []
        for c in members:
            values = _values(c.expr, item_env, items)
            not_true.append(_not_true(values))

        keys, usable, unidentified = self._keys(members, raw_keys)
        valid = keys if usable == len(keys) else _usable(keys)
        index_of: dict[Any, int] | None = None  # key -> item index, built only when needed
        for c, bad in zip(members, not_true):
            name = c.inv.name
            self.ok_keys[name] = list(valid)  # every present entity, until phase 2 says otherwise
            self.tally_of(name).total += len(valid)
            known = self.known.get(name, {})
            handled: set[str] = set()
            # phase 2a: items whose expression was not true
            for index, value in bad:
                key = keys[index]
                if key is None or key in handled:
                    continue
                handled.add(key)
                sample, error = self._sample(c, key, value)
                new, transition = advance(known.get(key), sample, self.now, c.inv, error=error, key=key)
                self._record(name, key, items[index], new, transition, listed=True, sample=sample, reason=error)
            # phase 2b: entities with state to carry whose expression was true, or that are gone
            for key, state in known.items():
                if key in handled:
                    continue
                if index_of is None:
                    index_of = dict(zip(keys, range(len(keys))))
                    index_of.pop(None, None)
                index = index_of.get(key)
                if index is None:
                    self._absent(c, key, state, unidentified)
                    continue
                item = items[index]
                if state.status == "ok" and state.last_error is None:
                    continue  # settled ok: it is in the ok list already
                resolve_ok, sample, error = True, "healthy", None
                if state.status == "firing" and c.resolve_when is not None:
                    item_env["item"] = item
                    resolve_ok, sample, error = self._resolve_ok(c, item_env, key)
                new, transition = advance(state, sample, self.now, c.inv, resolve_ok=resolve_ok, error=error, key=key)
                self._record(name, key, item, new, transition, listed=True, sample=sample, reason=error)

    def _items(self, first: _Compiled, env: dict[str, Any]) -> tuple[list[Any], str | None]:
        assert first.for_each is not None
        source = first.for_each.source.strip()
        if source in first.observations and source.isidentifier():
            items = env[source]  # a bare observation name needs no CEL (nor a deep check of a big list)
        else:
            try:
                items = first.for_each.evaluate(env)
            except ExpressionEvalError as exc:
                return [], f"for_each failed: {exc}"
        if not isinstance(items, list):
            return [], f"for_each gave a {_kind(items)}, not a list"
        return items, None

    def _keys(self, members: list[_Compiled], raw_keys: list[Any]) -> tuple[list[str | None], int, str | None]:
        """Keys as text (None where unusable), how many are usable, and the problem that left
        some entities unidentified (None when every item has a key)."""
        kinds = set(map(type, raw_keys))
        keys: list[Any]
        if kinds <= {str}:
            keys = raw_keys
        elif kinds == {int}:
            keys = list(map(str, raw_keys))
        else:
            keys = [_key_text(k) for k in raw_keys]
        unidentified = None
        usable = len(keys)
        if None in keys:
            for raw, key in zip(raw_keys, keys):
                if key is None:
                    usable -= 1
                    problem = f"key failed: {raw}" if isinstance(raw, ExpressionEvalError) else (
                        f"key gave a {_kind(raw)}, not a string or number"
                    )
                    unidentified = unidentified or problem
                    self._report(members, problem)
        distinct = set(keys)
        distinct.discard(None)
        if len(distinct) != usable:  # duplicate keys: the first item keeps the key
            keys = list(keys)
            seen: set[str] = set()
            for index, key in enumerate(keys):
                if key is None:
                    continue
                if key in seen:
                    self._report(members, f"two items have the key {key!r}; the later one is ignored")
                    keys[index] = None
                    usable -= 1
                seen.add(key)
        return keys, usable, unidentified

    def _absent(self, c: _Compiled, key: str, state: EntityState, unidentified: str | None) -> None:
        """A known entity missing from the list: gone (a healthy sample), or maybe just
        unidentifiable when some item's key failed (an error sample)."""
        if unidentified is not None:
            self.step(c, key, None, "error", error=f"invariant '{c.inv.name}': {unidentified}")
            return
        new, transition = advance(state, "healthy", self.now, c.inv, key=key)
        if new.status == "ok" and transition is None:
            return  # an ok entity that left the list is forgotten
        self._record(c.inv.name, key, None, new, transition)

    def _report(self, members: list[_Compiled], problem: str) -> None:
        for c in members:
            self.tally_of(c.inv.name).errors.append(f"invariant '{c.inv.name}': {problem}")

    # ------------------------------------------------------------------ samples

    def _sample(self, c: _Compiled, key: str, value: Any) -> tuple[Sample, str | None]:
        if value is True:
            return "healthy", None
        if value is False:
            return "violated", None
        where = f"invariant '{c.inv.name}'" + (f" for key {key!r}" if c.for_each is not None else "")
        if isinstance(value, ExpressionEvalError):
            message = f"{where}: {value}"
        else:
            message = f"{where}: expr gave a {_kind(value)}, not a bool"
        self.tally_of(c.inv.name).errors.append(message)
        return "error", message

    def _resolve_ok(self, c: _Compiled, env: dict[str, Any], key: str) -> tuple[bool, Sample, str | None]:
        """resolve_when of a firing, healthy entity: (resolve_ok, sample, error)."""
        assert c.resolve_when is not None
        where = f"invariant '{c.inv.name}'" + (f" for key {key!r}" if c.for_each is not None else "")
        value = _value(c.resolve_when, env)
        if value is True or value is False:
            return value, "healthy", None
        if isinstance(value, ExpressionEvalError):
            message = f"{where}: resolve_when failed: {value}"
        else:
            message = f"{where}: resolve_when gave a {_kind(value)}, not a bool"
        self.tally_of(c.inv.name).errors.append(message)
        return True, "error", message


def _value(expr: CompiledExpr, env: Mapping[str, Any]) -> Any:
    """The expression's value, or the ExpressionEvalError it raised."""
    try:
        return expr.evaluate(env)
    except ExpressionEvalError as exc:
        return exc


def _values(expr: CompiledExpr, item_env: dict[str, Any], items: list[Any]) -> list[Any]:
    """`expr` for every item (bound to `item` on top of `item_env`); a failed evaluation gives
    its ExpressionEvalError in that item's place."""
    return expr.evaluate_each(item_env, items, "item")


def _not_true(values: list[Any]) -> list[tuple[int, Any]]:
    """(index, value) of every value that is not `True`, in order; the scan runs in C, since
    most values are `True` (`1` and `1.0` are not)."""
    indexes = compress(range(len(values)), map(is_not, values, repeat(True)))
    return [(index, values[index]) for index in indexes]


def _usable(keys: list[str | None]) -> list[str]:
    return [k for k in keys if k is not None]
