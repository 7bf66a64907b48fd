"""The JSON Schema of eval files (`schemas/opctl-eval.schema.json`) and their reference
(`docs/eval.md`), generated from the models like the config's; tests fail when either is stale.

    python -m engine.evals.docs      # rewrites both
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.config.docs import render_reference
from engine.config.schema import durations_as_text
from engine.evals.model import EvalFile

SCHEMA_ID = "https://opctl.dev/schemas/opctl-eval.schema.json"
ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schemas" / "opctl-eval.schema.json"
DOCS_FILE = ROOT / "docs" / "eval.md"
HEADER = [
    "# Eval files (`opctl eval`)",
    "",
    "Generated from the models by `python -m engine.evals.docs` (a test fails when this file is stale).",
    "The JSON Schema for editors is `schemas/opctl-eval.schema.json`; start an eval file with",
    "`# yaml-language-server: $schema=../../../schemas/opctl-eval.schema.json`. How evals run, score",
    "and replay: [docs/evals.md](evals.md).",
    "",
    "An eval file has top-level `config:` and `evals:` (that is how `opctl validate` tells it from",
    "a config or a test file). Frozen fixtures take the forms of `opctl test` fixtures; a live case",
    "names a scenario of the config's lab. CEL facts see the submission's fields: `summary`,",
    "`root_cause`, `confidence`, `evidence` (list of text), `alternatives` (list of",
    "`{hypothesis, why_rejected}`), `actions` (list of `{action, params, reason}`).",
    "",
]


def eval_schema() -> dict[str, Any]:
    schema = EvalFile.model_json_schema(by_alias=True)
    durations_as_text(schema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, "title": "opctl eval file", **schema}


def eval_schema_text() -> str:
    return json.dumps(eval_schema(), indent=2, sort_keys=True) + "\n"


def shipped_eval_files() -> list[Path]:
    return sorted([*ROOT.glob("subjects/*/evals/*.yaml"), *ROOT.glob("examples/*/evals/*.yaml")])


def render_eval_reference(files: Iterable[Path]) -> str:
    return render_reference(EvalFile, eval_schema(), files, HEADER)


if __name__ == "__main__":
    SCHEMA_FILE.write_text(eval_schema_text())
    DOCS_FILE.write_text(render_eval_reference(shipped_eval_files()))
