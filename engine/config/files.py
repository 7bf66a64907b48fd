"""The YAML files under the paths a user names: files as given, directories walked.

    walk = yaml_files(["configs", "subjects/ratelimiter/lab.yaml"])
    walk.files      # [Path(...), ...]: named files first-come, then each directory's, sorted
    walk.skipped    # [Skip(path, reason)]: directories not entered (hidden, venvs, node_modules)

Walking never enters a hidden directory (`.git`, `.venv`, `.opctl`...), `node_modules`,
`__pycache__` or a Python virtual environment (a directory holding `pyvenv.cfg`): those hold
other tools' YAML. A directory named on the command line is entered whatever its name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

YAML_SUFFIXES = (".yaml", ".yml")
SKIPPED_DIRS = ("node_modules", "__pycache__")


@dataclass(frozen=True)
class Skip:
    """A path a walk did not use, and why (shown by `opctl validate -v`)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Walk:
    files: list[Path] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    empty_dirs: list[Path] = field(default_factory=list)  # named directories without any YAML file


def yaml_files(paths: Iterable[str | Path]) -> Walk:
    """Every YAML file under `paths`; raises FileNotFoundError for a path that does not exist."""
    walk = Walk()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = _walk_dir(path, walk.skipped)
            if not found:
                walk.empty_dirs.append(path)
            walk.files.extend(found)
        elif path.exists():
            walk.files.append(path)
        else:
            raise FileNotFoundError(str(path))
    unique = list(dict.fromkeys(walk.files))
    walk.files.clear()
    walk.files.extend(unique)
    return walk


def files_of_kind(
    paths: Iterable[str | Path], is_kind: Callable[[Path], bool], kind: str, marker: str
) -> tuple[list[Path], str | None]:
    """Files given (each must be of the kind) and the files of the kind under directories (walked
    as `yaml_files` walks), or a usage error naming the path; `kind` names the files ("test"),
    `marker` what makes one (for `opctl test` and `opctl eval`)."""
    files: list[Path] = []
    given = [Path(p) for p in paths]
    if not given:
        return [], f"give {kind} files or directories of them"
    for path in given:
        if path.is_dir():
            found = [p for p in yaml_files([path]).files if is_kind(p)]
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


def shown_path(path: str | Path) -> Path:
    """`path` as short as it can be said: relative to the current directory when inside it."""
    absolute = Path(path).resolve()
    try:
        return absolute.relative_to(Path.cwd())
    except ValueError:
        return absolute


def skip_reason(directory: Path) -> str | None:
    """Why a walk does not enter `directory` (None: it does)."""
    name = directory.name
    if name.startswith("."):
        return "hidden directory"
    if name in SKIPPED_DIRS:
        return f"{name} holds other tools' files"
    if (directory / "pyvenv.cfg").exists():
        return "a Python virtual environment"
    return None


def _walk_dir(root: Path, skipped: list[Skip]) -> list[Path]:
    found: list[Path] = []
    for current, dirs, files in os.walk(root):
        here = Path(current)
        kept = []
        for name in sorted(dirs):
            reason = skip_reason(here / name)
            if reason is None:
                kept.append(name)
            else:
                skipped.append(Skip(here / name, reason))
        dirs[:] = kept
        found.extend(here / name for name in files if name.endswith(YAML_SUFFIXES) and (here / name).is_file())
    return sorted(found)
