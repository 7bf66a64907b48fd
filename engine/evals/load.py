"""Loading an eval file: its schema, its config (and lab), and every name a case uses, checked.

Every problem is a located `Problem` (`file:line:col`); nothing here raises for a user's mistake.
A case naming an unknown scenario, invariant, observation or action is an error, and so is a
CEL fact that does not compile or reads a name the submission does not have.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engine.config.loader import LoadedDocument, load_document
from engine.config.problems import DocPath, Problem, sort_key
from engine.config.schema_errors import schema_problems
from engine.config.validate import LoadedConfig, load_config
from engine.errors import ConfigError, ExpressionCompileError
from engine.evals.model import EvalCase, EvalFile, Fact, TicketRef
from engine.expr import compile_expr
from engine.testing.fixtures import Timeline, parse_fixture, parse_start

# The variables a CEL fact sees (engine.evals.score.fact_env builds them).
FACT_VARIABLES = frozenset({"summary", "root_cause", "confidence", "evidence", "alternatives", "actions"})


@dataclass(frozen=True)
class CaseSpec:
    """One valid case, with what running it needs resolved."""

    file: Path
    subject: str
    case: EvalCase
    ticket: TicketRef  # for live cases: the scenario's, unless the case names one
    timelines: dict[str, Timeline]  # frozen cases only
    tick: float  # frozen cases only
    start: float  # frozen cases only

    @property
    def ident(self) -> str:
        """`subject/file-stem/case`: names the case in reports and its recordings."""
        return f"{self.subject}/{self.file.stem}/{self.case.name}"

    @property
    def key(self) -> str:
        return self.ticket.key or ""


@dataclass(frozen=True)
class LoadedEvals:
    file: Path
    spec: EvalFile
    config_path: Path
    loaded: LoadedConfig
    cases: tuple[CaseSpec, ...]


def is_eval_document(data: Any) -> bool:
    """A YAML document is an eval file when it has top-level `config:` and `evals:`."""
    return isinstance(data, dict) and "config" in data and "evals" in data


def is_eval_file(path: str | Path, env: Mapping[str, str] | None = None) -> bool:
    doc, _ = load_document(path, os.environ if env is None else env)
    return doc is not None and is_eval_document(doc.data)


def validate_eval_file(path: str | Path, env: Mapping[str, str] | None = None) -> list[Problem]:
    """Every problem of one eval file (and of the config it names), located."""
    return load_evals(path, env)[0]


def load_evals(path: str | Path, env: Mapping[str, str] | None = None) -> tuple[list[Problem], LoadedEvals | None]:
    doc, problems = load_document(path, os.environ if env is None else env)
    if doc is None:
        return problems, None
    checker = _Checker(doc, env)
    checker.problems.extend(problems)
    loaded = checker.run()
    found = sorted(set(checker.problems), key=sort_key)
    return found, (loaded if not any(p.severity == "error" for p in found) else None)


class _Checker:
    def __init__(self, doc: LoadedDocument, env: Mapping[str, str] | None) -> None:
        self.doc = doc
        self.env = env
        self.problems: list[Problem] = []

    def report(self, path: DocPath, message: str) -> None:
        mark = self.doc.mark_for(path)
        self.problems.append(Problem(self.doc.file, mark.line, mark.column, tuple(path), message))

    def run(self) -> LoadedEvals | None:
        try:
            spec = EvalFile.model_validate(self.doc.data)
        except ValidationError as exc:
            self.problems.extend(schema_problems(self.doc, exc, EvalFile))
            return None
        config_path = (Path(self.doc.base_dir) / spec.config).resolve()
        if not config_path.is_file():
            self.report(("config",), f"the config {spec.config} does not exist (looked in {self.doc.base_dir})")
            return None
        try:
            loaded = load_config(config_path, self.env)
        except ConfigError as exc:
            self.report(("config",), f"the config is not valid: {exc}")
            return None
        scenarios = self._scenarios(spec, loaded)
        seen: dict[str, int] = {}
        cases = []
        for index, case in enumerate(spec.evals):
            where: DocPath = ("evals", index)
            if case.name in seen:
                self.report(where + ("name",), f"another case (#{seen[case.name]}) has the name '{case.name}'")
            seen.setdefault(case.name, index)
            resolved = self._case(Path(self.doc.file).resolve(), case, where, loaded, scenarios)
            if resolved is not None:
                cases.append(resolved)
        return LoadedEvals(Path(self.doc.file).resolve(), spec, config_path, loaded, tuple(cases))

    # ----------------------------------------------------------------- parts

    def _scenarios(self, spec: EvalFile, loaded: LoadedConfig) -> dict[str, Any] | None:
        """The lab's scenarios by name, when some case is live (None: the config has no usable lab)."""
        if not any(case.live is not None for case in spec.evals):
            return {}
        from engine.lab.spec import load_lab  # labs are only needed by live cases

        if loaded.config.lab is None:
            for index, case in enumerate(spec.evals):
                if case.live is not None:
                    self.report(("evals", index, "live"), f"live cases need a lab, and the config {spec.config} declares no `lab:`")
            return None
        try:
            lab = load_lab(loaded.resolve(loaded.config.lab), self.env)
        except ConfigError as exc:
            self.report(("config",), f"the config's lab is not valid: {exc}")
            return None
        return {s.name: s for s in lab.lab.scenarios}

    def _case(
        self, file: Path, case: EvalCase, where: DocPath, loaded: LoadedConfig, scenarios: dict[str, Any] | None
    ) -> CaseSpec | None:
        config = loaded.config
        ok = self._expect(case, where + ("expect",), loaded)
        timelines: dict[str, Timeline] = {}
        tick = start = 0.0
        if case.live is not None:
            if scenarios is None:
                return None
            scenario = scenarios.get(case.live.scenario)
            if scenario is None:
                known = ", ".join(sorted(scenarios)) or "none"
                self.report(where + ("live", "scenario"), f"the lab has no scenario '{case.live.scenario}'; scenarios: {known}")
                return None
            ticket = case.live.ticket or TicketRef(invariant=scenario.expect.fires, key=scenario.expect.key)
            ok = self._ticket(ticket, where + ("live", "ticket"), loaded, allow_any_key=case.live.ticket is None) and ok
        else:
            assert case.frozen is not None
            frozen = case.frozen
            base = where + ("frozen",)
            ticket = frozen.ticket
            ok = self._ticket(ticket, base + ("ticket",), loaded, allow_any_key=False) and ok
            tick = frozen.tick if frozen.tick is not None else config.interval
            if tick <= 0:
                self.report(base + ("tick",), "the tick must be longer than 0s")
                ok = False
            parsed = parse_start(frozen.start)
            if isinstance(parsed, str):
                self.report(base + ("start",), parsed)
                ok = False
            else:
                start = parsed
            found = self._fixtures(frozen.fixtures, base + ("fixtures",), loaded)
            if found is None:
                ok = False
            else:
                timelines = found
        if not ok:
            return None
        return CaseSpec(file, config.subject.name, case, ticket, timelines, tick, start)

    def _ticket(self, ticket: TicketRef, where: DocPath, loaded: LoadedConfig, *, allow_any_key: bool) -> bool:
        invariant = loaded.config.invariant(ticket.invariant)
        if invariant is None:
            self._unknown(where + ("invariant",), "invariant", ticket.invariant, [i.name for i in loaded.config.invariants])
            return False
        if invariant.for_each is None and ticket.key:
            self.report(where + ("key",), f"'{invariant.name}' is cluster-wide: its only entity key is \"\"")
            return False
        if invariant.for_each is not None and ticket.key is None and not allow_any_key:
            self.report(where, f"'{invariant.name}' is per entity (for_each {invariant.for_each}): give the entity `key`")
            return False
        return True

    def _fixtures(self, raw: dict[str, Any], where: DocPath, loaded: LoadedConfig) -> dict[str, Timeline] | None:
        observations = loaded.config.observations
        timelines: dict[str, Timeline] = {}
        failed = False
        for name, fixture in raw.items():
            if name not in observations:
                self._unknown(where + (name,), "observation", name, observations)
                failed = True
                continue
            timeline = parse_fixture(fixture, where + (name,), self.doc.base_dir, observations[name].shape, self.report)
            if timeline is None:
                failed = True
            else:
                timelines[name] = timeline
        missing = [name for name in observations if name not in raw]
        if missing:
            self.report(
                where,
                f"no fixture for observation(s) {', '.join(missing)}; every observation of the config needs one "
                "(write {error: \"...\"} for one that is missing)",
            )
            failed = True
        return None if failed else timelines

    def _expect(self, case: EvalCase, where: DocPath, loaded: LoadedConfig) -> bool:
        ok = True
        for section, facts in (("root_cause", case.expect.root_cause), ("must_not", case.expect.must_not)):
            for index, fact in enumerate(facts):
                ok = self._fact(fact, where + (section, index)) and ok
        actions = {a.name for a in loaded.config.actions}
        for index, acceptable in enumerate(case.expect.actions):
            if acceptable.action not in actions:
                self._unknown(where + ("actions", index, "action"), "action", acceptable.action, actions)
                ok = False
        if case.expect.no_action_ok is False and not case.expect.actions:
            self.report(where + ("no_action_ok",), "with no acceptable `actions`, recommending nothing must be acceptable")
            ok = False
        return ok

    def _fact(self, fact: Fact, where: DocPath) -> bool:
        if fact.cel is None:
            return True
        try:
            compiled = compile_expr(fact.cel)
        except ExpressionCompileError as exc:
            self.report(where + ("cel",), f"not valid CEL: {exc}")
            return False
        unknown = sorted(compiled.names - FACT_VARIABLES)
        if unknown:
            self.report(where + ("cel",), f"'{unknown[0]}' is not a field of a diagnosis; fields: {', '.join(sorted(FACT_VARIABLES))}")
            return False
        return True

    def _unknown(self, path: DocPath, kind: str, name: str, known: Any) -> None:
        listing = ", ".join(sorted(known)) or "none"
        self.report(path, f"there is no {kind} '{name}' in the config; {kind}s: {listing}")
