"""Validating one config file: every problem, located; and `load_config` for the engine.

This is the ground floor: it knows configs only. Telling configs from lab and test files, and
checking the lab a config names, happens above it (engine.documents)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from engine.config.checks import PartialConfig, run_checks
from engine.config.incident_checks import incident_problems
from engine.config.notify_checks import notify_problems
from engine.config.schema_errors import schema_problems
from engine.config.loader import LoadedDocument, load_document
from engine.config.models import (
    Action, Config, Diagnosis, Incidents, Invariant, Notify, Observation, Prompts, Subject, Target, Var,
)
from engine.config.problems import Problem, sort_key
from engine.config.secrets import positional_secrets
from engine.durations import format_duration
from engine.errors import ConfigError
from engine.redact import Redactor


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
    def store_path(self) -> Path | str:
        """The store's file, resolved against the config's directory; a URL (postgresql://...,
        sqlite:///...) as written (engine.store.location reads it)."""
        store = self.config.store or f".opctl/{self.config.subject.name}.db"
        return store if "://" in store else self.resolve(store)


def validate_file(path: str | Path, env: Mapping[str, str] | None = None, *, strict: bool = False) -> list[Problem]:
    """Every problem of the config at `path` (not of the lab file it names: see engine.documents).
    `strict`: an observation an expression reads must be typed (a `shape`, or a typed source)."""
    problems, _ = check_config(path, env, strict=strict)
    return problems


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """The valid config at `path`, or ConfigError listing every problem (warnings pass)."""
    problems, loaded = check_config(path, env)
    errors = [p for p in problems if p.severity == "error"]
    if errors or loaded is None:
        listing = "\n".join(p.as_text() for p in errors)
        raise ConfigError(f"{path} is not a valid config ({len(errors)} problem(s)):\n{listing}")
    return loaded


def check_config(
    path: str | Path, env: Mapping[str, str] | None = None, *, strict: bool = False
) -> tuple[list[Problem], LoadedConfig | None]:
    """The problems of the config at `path`, and the config when its models validate."""
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
    partial = _partial(doc.data)
    problems.extend(run_checks(doc, partial, strict))
    problems.extend(incident_problems(doc, partial))
    problems.extend(notify_problems(doc, partial))
    if config is not None:
        problems.extend(_lease_problems(doc, config))
    # A place the loader already faulted (say, an unset ${VAR}) gets no follow-on problems.
    problems = problems[:loader_count] + [p for p in problems[loader_count:] if p.path not in located]
    problems = _unique(problems)
    secrets = doc.secrets | positional_secrets(doc.data, doc.env_values)
    redactor = Redactor(secrets)  # a problem may quote a value, and that value may be a secret
    problems = [replace(p, message=redactor.text(p.message)) for p in problems]
    loaded = None if config is None else LoadedConfig(config, Path(path).resolve(), doc.base_dir, secrets)
    return sorted(problems, key=sort_key), loaded


def _lease_problems(doc: LoadedDocument, config: Config) -> list[Problem]:
    """A lease that lasts no longer than a tick expires between two renewals: the leader would
    lose it every tick and replicas would take turns acting."""
    ttl = config.lease.ttl
    if ttl is None or ttl > config.interval:
        return []
    mark = doc.mark_for(("lease", "ttl"))
    return [Problem(doc.file, mark.line, mark.column, ("lease", "ttl"),
                    f"lease.ttl ({format_duration(ttl)}) must be longer than interval ({format_duration(config.interval)}): "
                    "the lease is renewed once a tick, so it would expire between renewals; leave it out for 3 x interval")]


# ---------------------------------------------------------------------------- partial config


def _partial(data: Any) -> PartialConfig:
    """Validate each section and each entry on its own, keeping what passes."""
    partial = PartialConfig()
    if not isinstance(data, dict):
        return partial
    partial.subject = _try(Subject, data.get("subject"))
    partial.prompts = _try(Prompts, data.get("prompts", {}))
    partial.diagnosis = _try(Diagnosis, data.get("diagnosis", {}))
    partial.incidents = _try(Incidents, data.get("incidents", {}))
    receivers = data.get("notify")
    if isinstance(receivers, list):
        partial.notify = [(i, n) for i, raw in enumerate(receivers) if (n := _try(Notify, raw)) is not None]
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
                if isinstance(raw, dict) and isinstance(raw.get("name"), str):
                    (partial.action_names if section == "actions" else partial.invariant_names).add(raw["name"])
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
