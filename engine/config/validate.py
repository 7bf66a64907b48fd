"""`opctl validate`: every problem of every file, located; and `load_config` for the engine."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from engine.config.checks import PartialConfig, run_checks
from engine.config.schema_errors import schema_problems
from engine.config.loader import load_document
from engine.config.models import Action, Config, Diagnosis, Invariant, Observation, Prompts, Subject, Target, Var
from engine.config.problems import Problem, sort_key
from engine.errors import ConfigError

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadedConfig:
    """A valid config with what the engine needs to use it."""

    config: Config
    file: Path
    base_dir: Path
    secrets: frozenset[str]

    def resolve(self, rel: str) -> Path:
        return (self.base_dir / rel).resolve()

    @property
    def store_path(self) -> Path:
        return self.resolve(self.config.store or f".opctl/{self.config.subject.name}.db")


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[Problem]]:
    """Files as given, and every *.yaml/*.yml under directories (sorted, recursive)."""
    files: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())
            if not found:
                problems.append(Problem(str(path), 0, 0, (), "no *.yaml or *.yml files in this directory", "warning"))
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(str(path))
    return files, problems


def validate_paths(paths: Iterable[str | Path], env: Mapping[str, str] | None = None, *, strict: bool = False) -> list[Problem]:
    """All problems of all files; raises FileNotFoundError for a path that does not exist.
    `strict`: an observation an expression reads must be typed (a `shape`, or a typed source)."""
    # Test files and lab files have validators of their own, which build on this module.
    from engine.lab.spec import validate_lab
    from engine.testing import is_test_document, validate_test_file

    files, problems = expand_paths(paths)
    for file in files:
        doc, _ = load_document(file, os.environ if env is None else env)
        data = doc.data if doc is not None else None
        if isinstance(data, dict) and is_test_document(data):
            problems.extend(validate_test_file(file, env))
        elif isinstance(data, dict) and "processes" in data and "subject" not in data:
            problems.extend(validate_lab(file, env))
        else:
            problems.extend(validate_file(file, env, strict=strict))
    return problems


def validate_file(path: str | Path, env: Mapping[str, str] | None = None, *, strict: bool = False) -> list[Problem]:
    problems, _ = _validate(path, env, strict)
    return problems


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """The valid config at `path`, or ConfigError listing every problem (warnings pass)."""
    problems, loaded = _validate(path, env)
    errors = [p for p in problems if p.severity == "error"]
    if errors or loaded is None:
        listing = "\n".join(p.as_text() for p in errors)
        raise ConfigError(f"{path} is not a valid config ({len(errors)} problem(s)):\n{listing}")
    return loaded


def _validate(path: str | Path, env: Mapping[str, str] | None, strict: bool = False) -> tuple[list[Problem], LoadedConfig | None]:
    doc, problems = load_document(path, os.environ if env is None else env)
    if doc is None:
        return sorted(problems, key=sort_key), None
    loader_count = len(problems)
    located = {p.path for p in problems}
    config: Config | None = None
    try:
        config = Config.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(schema_problems(doc, exc, Config))
    problems.extend(run_checks(doc, _partial(doc.data), strict))
    # A place the loader already faulted (say, an unset ${VAR}) gets no follow-on problems.
    problems = problems[:loader_count] + [p for p in problems[loader_count:] if p.path not in located]
    problems = _unique(problems)
    loaded = None
    if config is not None:
        loaded = LoadedConfig(config, Path(path).resolve(), doc.base_dir, doc.secrets)
        if config.lab is not None and (doc.base_dir / config.lab).is_file():
            problems.extend(_lab_problems(loaded, env))
    return sorted(problems, key=sort_key), loaded


def _lab_problems(loaded: LoadedConfig, env: Mapping[str, str] | None) -> list[Problem]:
    """The config's lab file, and that its scenarios name this config's invariants and actions."""
    from engine.errors import ConfigError
    from engine.lab.spec import check_expectations, load_lab, validate_lab

    assert loaded.config.lab is not None
    lab_path = loaded.resolve(loaded.config.lab)
    problems = validate_lab(lab_path, env)
    if any(p.severity == "error" for p in problems):
        return problems
    try:
        spec = load_lab(lab_path, env)
    except ConfigError:
        return problems
    config = loaded.config
    return problems + check_expectations(spec, [i.name for i in config.invariants], [a.name for a in config.actions])


# ---------------------------------------------------------------------------- partial config


def _partial(data: Any) -> PartialConfig:
    """Validate each section and each entry on its own, keeping what passes."""
    partial = PartialConfig()
    if not isinstance(data, dict):
        return partial
    partial.subject = _try(Subject, data.get("subject"))
    partial.prompts = _try(Prompts, data.get("prompts", {}))
    partial.diagnosis = _try(Diagnosis, data.get("diagnosis", {}))
    variables = data.get("vars")
    if isinstance(variables, dict):
        partial.vars = {k: v for k, raw in variables.items() if isinstance(k, str) and (v := _try(Var, raw)) is not None}
    lab = data.get("lab")
    partial.lab = lab if isinstance(lab, str) and lab else None
    for section, model, into in (
        ("targets", Target, partial.targets),
        ("observations", Observation, partial.observations),
    ):
        entries = data.get(section)
        if isinstance(entries, dict):
            names = {k for k in entries if isinstance(k, str)}
            if section == "targets":
                partial.target_names = names
            else:
                partial.observation_names = names
            for name, raw in entries.items():
                value = _try(model, raw)
                if value is not None:
                    into[name] = value
    for section, model, into_list in (
        ("invariants", Invariant, partial.invariants),
        ("actions", Action, partial.actions),
    ):
        entries = data.get(section)
        if isinstance(entries, list):
            for index, raw in enumerate(entries):
                if section == "actions" and isinstance(raw, dict) and isinstance(raw.get("name"), str):
                    partial.action_names.add(raw["name"])
                value = _try(model, raw)
                if value is not None:
                    into_list.append((index, value))
                else:
                    partial.entries_complete = False
    return partial


def _try(model: type[BaseModel], raw: Any) -> Any:
    if raw is None:
        return None
    try:
        return TypeAdapter(model).validate_python(raw)
    except ValidationError:
        return None


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[Any, ...]] = set()
    out = []
    for p in problems:
        key = (p.file, p.line, p.column, p.path, p.message, p.severity)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
