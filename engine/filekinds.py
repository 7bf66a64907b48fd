"""Which validator a YAML file gets in `opctl validate`: eval files (engine.evals) here, every
other kind (configs, lab files, test files) through engine.config.validate.

It lives outside engine/config so that the config package never imports the packages built on
it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from collections.abc import Callable

from engine.config.loader import load_document
from engine.config.problems import Problem
from engine.config.validate import YAML_SUFFIXES, expand_paths
from engine.config.validate import validate_paths as validate_other_paths


def validate_paths(paths: Iterable[str | Path], env: Mapping[str, str] | None = None, *, strict: bool = False) -> list[Problem]:
    """All problems of all files; raises FileNotFoundError for a path that does not exist.
    `strict` as in engine.config.validate.validate_paths (configs only)."""
    from engine.evals.load import is_eval_document, validate_eval_file

    files, problems = expand_paths(paths)
    for file in files:
        doc, _ = load_document(file, os.environ if env is None else env)
        if doc is not None and is_eval_document(doc.data):
            problems.extend(validate_eval_file(file, env))
        else:
            problems.extend(validate_other_paths([file], env, strict=strict))
    return problems


def files_of_kind(paths: Iterable[str | Path], is_kind: Callable[[Path], bool], kind: str, marker: str) -> tuple[list[Path], str | None]:
    """Files given (each must be of the kind) and the files of the kind under directories, or a
    usage error naming the path; `kind` names the files ("test"), `marker` what makes one."""
    files: list[Path] = []
    given = list(paths)
    if not given:
        return [], f"give {kind} files or directories of them"
    for raw in given:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file() and is_kind(p))
            if not found:
                return [], f"{path}: no {kind} files here (YAML files with {marker})"
            files.extend(found)
        elif path.is_file():
            if not is_kind(path):
                return [], f"{path} is not a {kind} file: it needs {marker}"
            files.append(path)
        else:
            return [], f"{path}: no such file or directory"
    return list(dict.fromkeys(files)), None
