"""The built-in invariant `target_up`: one entity per declared target (key = the target's name).

A target is down on a tick when every observation of it made this tick failed; `target_up` fires
once it has been down for the target's `down_after` (default 3 x `interval`), with the
target's `severity`, and resolves on the first tick one of its observations answers again.
Targets no observation reads (used only by actions) are never judged.

Pure like engine.evaluate: the state machine is `advance`, one Invariant per target (its
`for` is the target's `down_after`); the caller passes the tick's results and `now`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from engine.config.models import TARGET_UP, Config, Invariant
from engine.durations import format_duration
from engine.evaluate import Entity, EntityState, Evaluation, InvariantReport, StateMap, Transition, advance

if TYPE_CHECKING:
    from engine.observe import ObservationResult


class TargetHealth:
    """Judges every observed target of a config, tick by tick."""

    def __init__(self, config: Config) -> None:
        self.observations_of: dict[str, list[str]] = {}
        for name, observation in config.observations.items():
            self.observations_of.setdefault(observation.query.target, []).append(name)
        self.invariants: dict[str, Invariant] = {
            target: config.target_up(target)
            for target in sorted(self.observations_of)
            if target in config.targets
        }

    def add_to(
        self,
        evaluation: Evaluation,
        results: Mapping[str, ObservationResult],
        states: Mapping[tuple[str, str], EntityState],
        now: float,
    ) -> Evaluation:
        """`evaluation` with target_up's states, transitions, entities and report added."""
        ok: list[str] = []
        unsettled: dict[tuple[str, str], EntityState] = {}
        transitions: list[Transition] = []
        entities: dict[tuple[str, str], Entity] = {}
        counts = dict.fromkeys(("ok", "pending", "firing", "unknown", "error"), 0)
        for target, invariant in self.invariants.items():
            made = [(name, results[name]) for name in self.observations_of[target] if name in results]
            failed = [(name, r) for name, r in made if not r.ok]
            down = bool(made) and len(failed) == len(made)
            item = {
                "target": target,
                "up": not down,
                "observations": [name for name, _ in failed],
                "error": failed[-1][1].error if down else None,
                "down_after": format_duration(invariant.hold),
            }
            sk = (TARGET_UP, target)
            new, transition = advance(states.get(sk), "violated" if down else "healthy", now, invariant, key=target)
            if transition is not None:
                transitions.append(transition)
            if transition is not None or new.status != "ok":
                entities[sk] = Entity(TARGET_UP, target, item)
            if new.status == "ok":
                ok.append(target)  # healthy and violated samples carry no error
            else:
                unsettled[sk] = new
            counts[new.status] += 1
        report = InvariantReport(TARGET_UP, "ok", None, counts, {}, {})
        merged = evaluation.states.with_invariant(TARGET_UP, ok, unsettled) if isinstance(evaluation.states, StateMap) \
            else StateMap({TARGET_UP: ok}, {**evaluation.states, **unsettled})
        return replace(
            evaluation,
            states=merged,
            transitions=[*evaluation.transitions, *transitions],
            entities={**evaluation.entities, **entities},
            reports={**evaluation.reports, TARGET_UP: report},
        )
