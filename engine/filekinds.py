"""Which validator a YAML file gets in `opctl validate`: eval files (engine.evals) here, every
other kind (configs, lab files, test files) through engine.config.validate.

It lives outside engine/config so that the config package never imports the packages built on
it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from engine.config.loader import load_document
from engine.config.problems import Problem
from engine.config.validate import expand_paths
from engine.config.validate import validate_paths as validate_other_paths


def validate_paths(paths: Iterable[str | Path], env: Mapping[str, str] | None = None) -> list[Problem]:
    """All problems of all files; raises FileNotFoundError for a path that does not exist."""
    from engine.evals.load import is_eval_document, validate_eval_file

    files, problems = expand_paths(paths)
    for file in files:
        doc, _ = load_document(file, os.environ if env is None else env)
        if doc is not None and is_eval_document(doc.data):
            problems.extend(validate_eval_file(file, env))
        else:
            problems.extend(validate_other_paths([file], env))
    return problems
