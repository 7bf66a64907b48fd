"""Lab files: load, validate (every problem located at file:line:col), resolve paths.

    problems = validate_lab("subjects/ratelimiter/lab.yaml")     # for `opctl validate`
    spec = load_lab("subjects/ratelimiter/lab.yaml")             # LabSpec, or ConfigError

The file is read with the config loader, so it gets the same `${VAR:-default}` interpolation,
duplicate-key errors and positions as an operator config.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from engine.config.files import shown_path
from engine.config.loader import LoadedDocument, load_document
from engine.config.problems import DocPath, Problem, sort_key
from engine.config.schema_errors import schema_problems
from engine.config.validate import LoadedConfig
from engine.errors import ConfigError
from engine.lab.models import Lab, Process, Scenario, Step
from engine.lab.prometheus_server import lab_config

DEFAULT_STATE_DIR = "../../.opctl/lab/{name}"


@dataclass(frozen=True)
class LabSpec:
    """A valid lab file with its paths resolved."""

    lab: Lab
    file: Path
    base_dir: Path
    state_dir: Path

    @property
    def name(self) -> str:
        return self.lab.name

    @property
    def lab_json(self) -> Path:
        return self.state_dir / "lab.json"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def process(self, name: str) -> Process:
        for process in self.lab.processes:
            if process.name == name:
                return process
        known = ", ".join(p.name for p in self.lab.processes)
        raise ConfigError(f"lab '{self.name}' has no process '{name}'; known: {known}")

    def scenario(self, name: str) -> Scenario:
        for scenario in self.lab.scenarios:
            if scenario.name == name:
                return scenario
        known = ", ".join(s.name for s in self.lab.scenarios) or "none"
        raise ConfigError(f"lab '{self.name}' ({self.file}) has no scenario '{name}'; known: {known}")

    def cwd_of(self, process: Process) -> Path:
        return (self.base_dir / (process.cwd or self.lab.cwd)).resolve()


def load_lab(path: str | Path, env: Mapping[str, str] | None = None) -> LabSpec:
    """The valid lab at `path`, or ConfigError listing every problem (warnings pass)."""
    problems, spec = _validate(Path(path), env)
    errors = [p for p in problems if p.severity == "error"]
    if errors or spec is None:
        listing = "\n".join(p.as_text() for p in errors)
        raise ConfigError(f"{path} is not a valid lab file ({len(errors)} problem(s)):\n{listing}")
    return spec


def validate_lab(path: str | Path, env: Mapping[str, str] | None = None) -> list[Problem]:
    """Every problem of the lab file at `path`, sorted by position."""
    problems, _ = _validate(Path(path), env)
    return problems


def config_lab_problems(loaded: LoadedConfig, env: Mapping[str, str] | None = None) -> list[Problem]:
    """The problems of the lab file a config names (`lab:`), and of its scenarios against the
    config: every invariant and action they expect must be the config's. [] without `lab:` or
    when the file is missing (the config's own checks report that)."""
    if loaded.config.lab is None or not (loaded.base_dir / loaded.config.lab).is_file():
        return []
    lab_path = shown_path(loaded.resolve(loaded.config.lab))  # as `opctl validate DIR` names it
    problems, spec = _validate(lab_path, env)
    if spec is None or any(p.severity == "error" for p in problems):
        return problems
    config = loaded.config
    return (
        problems
        + check_expectations(spec, [i.name for i in config.invariants], [a.name for a in config.actions])
        + check_conditions(spec, config.observations)
    )


def check_conditions(spec: LabSpec, observations: Iterable[str]) -> list[Problem]:
    """Problems where a `wait_until: {expr}` reads a name that is not one of the config's
    observations (or `now`)."""
    from engine.expr import compile_expr

    known = {*observations, "now"}
    doc, _ = load_document(shown_path(spec.file))
    problems = []
    for path, step in _steps(spec.lab):
        if step.wait_until is None or step.wait_until.expr is None:
            continue
        unknown = sorted(compile_expr(step.wait_until.expr).names - known)
        if unknown:
            listing = ", ".join(sorted(known - {"now"})) or "none"
            problems.append(_at(doc, spec.file, (*path, "wait_until", "expr"),
                                f"`expr` reads {', '.join(unknown)}, which the config does not observe; known: {listing}"))
    return problems


def _steps(lab: Lab) -> Iterator[tuple[DocPath, Step]]:
    """Every step of every scenario, with its document path."""
    for i, scenario in enumerate(lab.scenarios):
        base: DocPath = ("scenarios", i)
        for section, steps in (
            (base + ("setup",), scenario.setup),
            (base + ("inject",), scenario.inject),
            (base + ("cleanup",), scenario.cleanup),
            (base + ("expect", "recovered", "check"), scenario.expect.recovered.check),
        ):
            for j, step in enumerate(steps):
                yield (*section, j), step


def check_expectations(spec: LabSpec, invariants: Iterable[str], actions: Iterable[str] = ()) -> list[Problem]:
    """Problems where a scenario names an invariant or action the operator config lacks.

    Positions come from re-reading the lab file; call with the names of the config that names
    this lab (`lab:`)."""
    doc, _ = load_document(shown_path(spec.file))
    known_invariants, known_actions = set(invariants), set(actions)
    problems = []
    for i, scenario in enumerate(spec.lab.scenarios):
        base: DocPath = ("scenarios", i, "expect")
        named = [(base + ("fires",), scenario.expect.fires, known_invariants, "invariant")]
        if scenario.expect.recovered.invariant_ok is not None:
            named.append(
                (base + ("recovered", "invariant_ok"), scenario.expect.recovered.invariant_ok, known_invariants, "invariant")
            )
        if scenario.expect.action is not None and known_actions:
            named.append((base + ("action",), scenario.expect.action, known_actions, "action"))
        for path, name, known, what in named:
            if name not in known:
                listing = ", ".join(sorted(known)) or "none"
                problems.append(
                    _at(doc, spec.file, path, f"scenario '{scenario.name}' expects {what} '{name}', which the config does not declare; known: {listing}")
                )
    return problems


# ------------------------------------------------------------------------------------ internals


def _validate(path: Path, env: Mapping[str, str] | None) -> tuple[list[Problem], LabSpec | None]:
    doc, problems = load_document(path, os.environ if env is None else env)
    if doc is None:
        return sorted(problems, key=sort_key), None
    located = {p.path for p in problems}
    lab: Lab | None = None
    try:
        lab = Lab.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(schema_problems(doc, exc, Lab))
    spec = None
    if lab is not None:
        state_dir = lab.state_dir or DEFAULT_STATE_DIR.format(name=lab.name)
        spec = LabSpec(lab, path.absolute(), doc.base_dir, (doc.base_dir / state_dir).resolve())
        problems.extend(_semantic_problems(doc, spec))
    # A place the loader already faulted (an unset ${VAR}) gets no follow-on problems.
    problems = [p for i, p in enumerate(problems) if i < len(located) or p.path not in located]
    return sorted(dict.fromkeys(problems), key=sort_key), spec


def _at(doc: LoadedDocument | None, file: Path | str, path: DocPath, message: str, *, key: bool = False) -> Problem:
    if doc is None:
        return Problem(str(file), 0, 0, path, message)
    mark = doc.key_mark_for(path) if key else doc.mark_for(path)
    return Problem(doc.file, mark.line, mark.column, path, message)


def _semantic_problems(doc: LoadedDocument, spec: LabSpec) -> list[Problem]:
    lab = spec.lab
    problems: list[Problem] = []

    def report(path: DocPath, message: str, *, key: bool = False) -> None:
        problems.append(_at(doc, doc.file, path, message, key=key))

    names: dict[str, int] = {}
    redis_names: set[str] = set()
    ports: dict[int, str] = {}
    for i, process in enumerate(lab.processes):
        base: DocPath = ("processes", i)
        if process.name in names:
            report(base + ("name",), f"process name '{process.name}' is used twice (first at processes.{names[process.name]})")
        names.setdefault(process.name, i)
        if process.redis is not None:
            redis_names.add(process.name)
        for j, dep in enumerate(process.after):
            if dep == process.name:
                report(base + ("after", j), f"process '{process.name}' cannot start after itself")
            elif dep not in names:
                later = any(p.name == dep for p in lab.processes)
                hint = "processes start in the order listed; move it above" if later else "no such process"
                report(base + ("after", j), f"process '{process.name}' starts after '{dep}': {hint}")
        if process.prometheus is not None:
            settings = process.prometheus
            try:
                lab_config(spec.base_dir / settings.config, settings.targets, settings.scrape_interval)
            except ValueError as exc:
                report(base + ("prometheus",), str(exc))
        cwd = spec.cwd_of(process)
        if not cwd.is_dir():
            report(base + ("cwd",) if process.cwd else ("cwd",), f"working directory {cwd} of process '{process.name}' does not exist")
        for port in process.listen_ports():
            if port in ports and ports[port] != process.name:
                report(base, f"process '{process.name}' listens on port {port}, already used by process '{ports[port]}'")
            ports.setdefault(port, process.name)

    scenario_names: dict[str, int] = {}
    for i, scenario in enumerate(lab.scenarios):
        if scenario.name in scenario_names:
            report(("scenarios", i, "name"), f"scenario name '{scenario.name}' is used twice (first at scenarios.{scenario_names[scenario.name]})")
        scenario_names.setdefault(scenario.name, i)
    for path, step in _steps(lab):
        where = (*path, step.kind)
        target = step.process
        if target is None:
            continue
        if target not in names:
            report(where + ("process",), f"step names process '{target}', which the lab does not declare; known: {', '.join(names) or 'none'}")
        elif step.kind == "redis" or (step.kind == "wait_until" and step.wait_until and step.wait_until.redis):
            if target not in redis_names:
                report(where, f"a `redis` step needs a redis process; '{target}' is a command")
    return problems
