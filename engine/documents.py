"""The kinds of opctl documents, telling them apart, and validating any of them (`opctl validate`).

    checked = check_paths(["."])        # Checked(problems, files: [(path, kind)], skipped)
    kind_of(path)                       # KINDS["config"] | ["lab"] | ["test"] | ["eval"] | None

The config layer (engine.config) is the ground floor and knows configs only; lab files
(engine.lab), test files (engine.testing) and eval files (engine.evals) build on it. This module
sits above all of them and is the one place that dispatches over file kinds, so a new kind is
one more entry in `KINDS`.

A document's kind comes from its `# yaml-language-server: $schema=.../<kind>.schema.json` line
when it has one, else from its top-level keys. Walking a directory keeps only opctl documents
(other tools' YAML, like compose files or CI workflows, is skipped and reported with `-v`) and
never enters hidden directories, virtual environments or `node_modules` (engine.config.files).
A file named on the command line is always validated: as a config when it is no known kind.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config.files import Skip, yaml_files
from engine.config.loader import load_document
from engine.config.problems import Problem
from engine.config.validate import check_config
from engine.evals.load import is_eval_document, validate_eval_file
from engine.lab.spec import config_lab_problems, validate_lab
from engine.schemas import SCHEMA_FILES
from engine.testing import is_test_document, validate_test_file

Env = Mapping[str, str] | None


@dataclass(frozen=True)
class Kind:
    """One opctl language: how to recognise its documents and validate one."""

    name: str
    schema_file: str  # under schemas/; also what its yaml-language-server line names
    recognise: Callable[[dict[str, Any]], bool]
    validate: Callable[[Path, Env, Options], list[Problem]]


@dataclass(frozen=True)
class Options:
    """How strictly to validate. strict: an observation an expression reads must be typed."""

    strict: bool = False


def _plain(validate: Callable[[Path, Env], list[Problem]]) -> Callable[[Path, Env, Options], list[Problem]]:
    """A validator that takes no options (only configs have strict checks)."""
    return lambda path, env, options: validate(path, env)


def _validate_config(path: Path, env: Env, options: Options) -> list[Problem]:
    problems, loaded = check_config(path, env, strict=options.strict)
    return problems if loaded is None else problems + config_lab_problems(loaded, env)


def _is_lab(data: dict[str, Any]) -> bool:
    return ("processes" in data or "scenarios" in data) and not {"subject", "invariants", "config"} & data.keys()


def _is_config(data: dict[str, Any]) -> bool:
    return bool({"subject", "targets", "observations", "invariants"} & data.keys())


# Order matters: the first kind that recognises a document wins.
KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("eval", SCHEMA_FILES["eval"], is_eval_document, _plain(validate_eval_file)),
        Kind("test", SCHEMA_FILES["test"], is_test_document, _plain(validate_test_file)),
        Kind("lab", SCHEMA_FILES["lab"], _is_lab, _plain(validate_lab)),
        Kind("config", SCHEMA_FILES["config"], _is_config, _validate_config),
    )
}
_SCHEMA_LINE = re.compile(r"^#\s*yaml-language-server:\s*\$schema=\S*?([A-Za-z0-9_.-]+\.schema\.json)\s*$", re.MULTILINE)
_LOOKS_LIKE = re.compile(r"^(subject|targets|observations|invariants|processes|scenarios|cases|properties):", re.MULTILINE)


@dataclass(frozen=True)
class Checked:
    """What `check_paths` found: every problem, the files it validated and what it skipped."""

    problems: list[Problem] = field(default_factory=list)
    files: list[tuple[Path, str]] = field(default_factory=list)  # (file, kind name)
    skipped: list[Skip] = field(default_factory=list)


def kind_of(path: Path, env: Env = None) -> Kind | None:
    """The kind of the document at `path`, or None when it is no opctl document."""
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        return None
    declared = _SCHEMA_LINE.search(head)
    if declared:
        for kind in KINDS.values():
            if kind.schema_file == declared.group(1):
                return kind
    doc, _ = load_document(path, os.environ if env is None else env)
    if doc is None:
        # YAML that does not load: an opctl document with a syntax error is still reported
        return KINDS["config"] if _LOOKS_LIKE.search(head) else None
    if not isinstance(doc.data, dict):
        return None
    return next((kind for kind in KINDS.values() if kind.recognise(doc.data)), None)


def check_paths(paths: Iterable[str | Path], env: Env = None, options: Options = Options()) -> Checked:
    """Validate the named files and the opctl documents under the named directories.
    Raises FileNotFoundError for a path that does not exist."""
    named = [Path(p) for p in paths]
    walk = yaml_files(named)
    checked = Checked(skipped=list(walk.skipped))
    for directory in walk.empty_dirs:
        checked.problems.append(Problem(str(directory), 0, 0, (), "no *.yaml or *.yml files in this directory", "warning"))
    explicit = {p for p in named if not p.is_dir()}
    for file in walk.files:
        kind = kind_of(file, env)
        if kind is None and file not in explicit:
            checked.skipped.append(Skip(file, f"not an opctl document (no schema line or top-level keys of a {', '.join(KINDS)} file)"))
            continue
        kind = kind or KINDS["config"]
        checked.files.append((file, kind.name))
        checked.problems.extend(kind.validate(file, env, options))
    unique = list(dict.fromkeys(checked.problems))  # a lab checked on its own and through its config
    checked.problems.clear()
    checked.problems.extend(unique)
    return checked


def validate_paths(paths: Iterable[str | Path], env: Env = None, *, strict: bool = False) -> list[Problem]:
    """Every problem of every document under `paths` (see `check_paths`)."""
    return check_paths(paths, env, Options(strict=strict)).problems
