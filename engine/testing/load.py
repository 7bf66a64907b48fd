"""Loading a test file: its schema, its config, its fixtures, and every name it uses, checked.

Every problem is a located `Problem`; nothing here raises for a user's mistake. Warnings fail
too (promtool's users asked for that): an unused fixture step or shape, an `at` between ticks,
an unknown invariant, observation, action or counter are all errors.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engine.act import GATES
from engine.config.loader import LoadedDocument, load_document
from engine.config.problems import DocPath, Problem, sort_key
from engine.config.reads import names_read
from engine.config.schema_errors import schema_problems
from engine.config.validate import LoadedConfig, load_config
from engine.durations import format_duration
from engine.errors import ConfigError, ExpressionCompileError
from engine.expr import compile_expr
from engine.metrics import EngineMetrics
from engine.testing.counters import counter_names, parse_selector
from engine.testing.fixtures import Timeline, parse_fixture, parse_start
from engine.testing.model import REQUEST_FIELDS, TestFile
from engine.testing.shapes import strategy_for


@dataclass(frozen=True)
class LoadedTest:
    """A valid test file, ready to run."""

    file: Path
    spec: TestFile
    loaded: LoadedConfig  # the config, with the test file's `mode` applied
    tick: float
    start: float
    timelines: dict[str, Timeline]
    shapes: dict[str, dict[str, Any]]  # effective shape of every observation that has one


def is_test_document(data: Any) -> bool:
    """A YAML document is a test file when it has top-level `config:` and `cases:` or `properties:`."""
    return isinstance(data, dict) and "config" in data and ("cases" in data or "properties" in data)


def is_test_file(path: str | Path, env: Mapping[str, str] | None = None) -> bool:
    doc, _ = load_document(path, os.environ if env is None else env)
    return doc is not None and is_test_document(doc.data)


def validate_test_file(path: str | Path, env: Mapping[str, str] | None = None) -> list[Problem]:
    """Every problem of one test file (and of the config it names), located."""
    problems, _ = load_test(path, env)
    return problems


def load_test(path: str | Path, env: Mapping[str, str] | None = None) -> tuple[list[Problem], LoadedTest | None]:
    doc, problems = load_document(path, os.environ if env is None else env)
    if doc is None:
        return problems, None
    checker = _Checker(doc)
    checker.problems.extend(problems)
    loaded = checker.run()
    found = sorted(set(checker.problems), key=sort_key)
    return found, (loaded if not any(p.severity == "error" for p in found) else None)


class _Checker:
    def __init__(self, doc: LoadedDocument) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    def report(self, path: DocPath, message: str) -> None:
        mark = self.doc.mark_for(path)
        self.problems.append(Problem(self.doc.file, mark.line, mark.column, tuple(path), message))

    def run(self) -> LoadedTest | None:
        try:
            spec = TestFile.model_validate(self.doc.data)
        except ValidationError as exc:
            self.problems.extend(schema_problems(self.doc, exc, TestFile))
            return None
        loaded = self._config(spec)
        if loaded is None:
            return None
        config = loaded.config
        tick = spec.tick if spec.tick is not None else config.interval
        if tick <= 0:
            self.report(("tick",), "the tick must be longer than 0s")
            return None
        start = self._start(spec.start)
        shapes = self._shapes(spec, loaded)
        timelines = self._fixtures(spec, loaded, shapes, tick)
        self._cases(spec, loaded, tick)
        self._diagnoses(spec, loaded)
        self._properties(spec, loaded, shapes)
        if start is None or timelines is None:
            return None
        if spec.mode is not None and spec.mode != config.mode:
            loaded = dataclasses.replace(loaded, config=config.model_copy(update={"mode": spec.mode}))
        return LoadedTest(Path(self.doc.file), spec, loaded, tick, start, timelines, shapes)

    # ----------------------------------------------------------------- parts

    def _config(self, spec: TestFile) -> LoadedConfig | None:
        file = Path(self.doc.base_dir) / spec.config
        if not file.is_file():
            self.report(("config",), f"the config {spec.config} does not exist (looked in {self.doc.base_dir})")
            return None
        try:
            return load_config(file)
        except ConfigError as exc:
            self.report(("config",), f"the config is not valid: {exc}")
            return None

    def _start(self, start: str | float) -> float | None:
        parsed = parse_start(start)
        if isinstance(parsed, str):
            self.report(("start",), parsed)
            return None
        return parsed

    def _shapes(self, spec: TestFile, loaded: LoadedConfig) -> dict[str, dict[str, Any]]:
        observations = loaded.config.observations
        shapes = {name: obs.shape for name, obs in observations.items() if obs.shape is not None}
        for name, shape in spec.shapes.items():
            if name not in observations:
                self.report(("shapes", name), f"there is no observation '{name}' in the config; observations: {', '.join(sorted(observations))}")
            elif name in shapes:
                self.report(("shapes", name), f"observation '{name}' declares its shape in the config; remove this one")
            else:
                shapes[name] = shape
        return shapes

    def _fixtures(
        self, spec: TestFile, loaded: LoadedConfig, shapes: Mapping[str, dict[str, Any]], tick: float
    ) -> dict[str, Timeline] | None:
        observations = loaded.config.observations
        timelines: dict[str, Timeline] = {}
        failed = False
        if not spec.cases:
            if spec.fixtures:
                self.report(("fixtures",), "fixtures are unused: this file has no cases")
            return timelines
        for name, raw in spec.fixtures.items():
            if name not in observations:
                self.report(("fixtures", name), f"there is no observation '{name}' in the config; observations: {', '.join(sorted(observations))}")
                failed = True
                continue
            timeline = parse_fixture(raw, ("fixtures", name), self.doc.base_dir, shapes.get(name), self.report)
            if timeline is None:
                failed = True
            else:
                timelines[name] = timeline
        missing = [name for name in observations if name not in spec.fixtures]
        if missing:
            self.report(
                ("fixtures",),
                f"no fixture for observation(s) {', '.join(missing)}; every observation of the config needs one "
                "(write {error: \"...\"} for one that is down)",
            )
            failed = True
        last_at = max(case.at for case in spec.cases)
        last_index = round(last_at / tick)
        for name, timeline in timelines.items():
            problem = timeline.horizon_problem(last_index, last_at)
            if problem is not None:
                self.report(("fixtures", name), problem)
                failed = True
        return None if failed else timelines

    def _cases(self, spec: TestFile, loaded: LoadedConfig, tick: float) -> None:
        config = loaded.config
        invariants = config.invariants_by_name()
        actions = {a.name for a in config.actions}
        counters = counter_names(EngineMetrics().registry)
        seen: dict[str, int] = {}
        for index, case in enumerate(spec.cases):
            where: DocPath = ("cases", index)
            if case.name in seen:
                self.report(where + ("name",), f"another case (#{seen[case.name]}) has the name '{case.name}'")
            seen.setdefault(case.name, index)
            steps = case.at / tick
            if abs(steps - round(steps)) > 1e-6:
                self.report(
                    where + ("at",),
                    f"{format_duration(case.at)} is not a tick: ticks are every {format_duration(tick)} from the start",
                )
            expect = case.expect
            base = where + ("expect",)
            for name, wanted in expect.invariants.items():
                inv = invariants.get(name)
                if inv is None:
                    self._unknown(base + ("invariants", name), "invariant", name, invariants)
                elif isinstance(wanted, dict) and inv.for_each is None and set(map(str, wanted)) - {""}:
                    self.report(base + ("invariants", name), f"'{name}' is cluster-wide: its only entity key is \"\"")
            for name in expect.observation_errors:
                if name not in config.observations:
                    self._unknown(base + ("observation_errors", name), "observation", name, config.observations)
            for i, ticket in enumerate(expect.tickets or []):
                if ticket.invariant is not None and ticket.invariant not in invariants:
                    self._unknown(base + ("tickets", i, "invariant"), "invariant", ticket.invariant, invariants)
            for i, prompt in enumerate(expect.prompts):
                if prompt.invariant not in invariants:
                    self._unknown(base + ("prompts", i, "invariant"), "invariant", prompt.invariant, invariants)
                if not prompt.contains and not prompt.not_contains:
                    self.report(base + ("prompts", i), "give `contains` or `not_contains` text")
            for i, action in enumerate(expect.actions or []):
                if action.action not in actions:
                    self._unknown(base + ("actions", i, "action"), "action", action.action, actions)
                if action.invariant is not None and action.invariant not in invariants:
                    self._unknown(base + ("actions", i, "invariant"), "invariant", action.invariant, invariants)
                if action.gate is not None and action.gate not in GATES:
                    self.report(base + ("actions", i, "gate"), f"there is no gate '{action.gate}'; gates: {', '.join(GATES)}")
                for field in sorted(set(action.request or {}) - set(REQUEST_FIELDS)):
                    self.report(base + ("actions", i, "request", field), f"a request has no field '{field}'; fields: {', '.join(REQUEST_FIELDS)}")
                if action.request is not None and action.status not in (None, "executed", "executing", "failed"):
                    self.report(base + ("actions", i, "request"), f"a {action.status} action sends no request; only executed ones do")
            for i, name in enumerate(expect.not_actions):
                if name not in actions:
                    self._unknown(base + ("not_actions", i), "action", name, actions)
            for i, name in enumerate(case.then.approve if case.then is not None else []):
                if name not in actions:
                    self._unknown(where + ("then", "approve", i), "action", name, actions)
            for selector in expect.counters:
                try:
                    parsed = parse_selector(selector)
                except ValueError as exc:
                    self.report(base + ("counters", selector), str(exc))
                    continue
                if parsed.name not in counters:
                    self.report(
                        base + ("counters", selector),
                        f"there is no counter '{parsed.name}'; counters: {', '.join(counters)}",
                    )

    def _diagnoses(self, spec: TestFile, loaded: LoadedConfig) -> None:
        from engine.diagnose.types import Submission

        invariants = set(loaded.config.invariants_by_name())
        for index, recorded in enumerate(spec.diagnoses):
            where: DocPath = ("diagnoses", index)
            if recorded.invariant not in invariants:
                self._unknown(where + ("invariant",), "invariant", recorded.invariant, invariants)
            try:
                Submission.model_validate(recorded.diagnosis)
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                loc = ".".join(str(p) for p in first["loc"])
                self.report(where + ("diagnosis",), f"not a diagnosis: {loc or 'the value'}: {first['msg']}")

    def _properties(self, spec: TestFile, loaded: LoadedConfig, shapes: Mapping[str, dict[str, Any]]) -> None:
        config = loaded.config
        invariants = {inv.name: inv for inv in config.invariants}
        used_shapes: set[str] = set()
        for index, prop in enumerate(spec.properties):
            where: DocPath = ("properties", index)
            inv = invariants.get(prop.invariant)
            if inv is None:
                self._unknown(where + ("invariant",), "invariant", prop.invariant, invariants)
                continue
            names = set(names_read(inv))
            for field in ("fires_iff", "assume"):
                source = getattr(prop, field)
                if source is None:
                    continue
                try:
                    compiled = compile_expr(source)
                except ExpressionCompileError as exc:
                    self.report(where + (field,), f"not valid CEL: {exc}")
                    continue
                unknown = sorted(compiled.names - set(config.observations) - {"now"})
                if unknown:
                    self.report(
                        where + (field,),
                        f"'{unknown[0]}' is not an observation; observations: {', '.join(sorted(config.observations))}",
                    )
                names |= compiled.names
            for name in sorted(names & set(config.observations)):
                used_shapes.add(name)
                if name not in shapes:
                    self.report(
                        where,
                        f"observation '{name}' has no shape to generate data from; declare `shape:` in the config "
                        f"or under `shapes: {{{name}: ...}}` in this file",
                    )
                    continue
                try:
                    strategy_for(shapes[name], f"shape of {name}")
                except ConfigError as exc:
                    self.report(("shapes", name) if name in spec.shapes else where, str(exc))
        for name in spec.shapes:
            if name not in used_shapes and name in config.observations:
                self.report(("shapes", name), f"the shape of '{name}' is unused: no property reads that observation")

    def _unknown(self, path: DocPath, kind: str, name: str, known: Any) -> None:
        listing = ", ".join(sorted(known)) or "none"
        self.report(path, f"there is no {kind} '{name}' in the config; {kind}s: {listing}")
