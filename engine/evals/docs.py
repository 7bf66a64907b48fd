"""The JSON Schema of eval files (`schemas/opctl-eval.schema.json`) and their reference
(`docs/eval.md`), generated from the models like every file language's (engine.docs writes all
of them; tests fail when one is stale).

    python -m engine.docs      # rewrites every reference; `opctl schema eval` prints the schema
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.config.docs import Reference, render_reference
from engine.config.schema import model_schema, schema_json
from engine.evals.model import EvalFile

SCHEMA_NAME = "opctl-eval.schema.json"
ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schemas" / SCHEMA_NAME
DOCS_FILE = ROOT / "docs" / "eval.md"
INTRO = f"""\
Generated from the models by `python -m engine.docs` (a test fails when this file is stale).
The JSON Schema for editors is `schemas/{SCHEMA_NAME}`; start an eval file with
`# yaml-language-server: $schema=../../../schemas/{SCHEMA_NAME}`. How evals run, score
and replay: [docs/evals.md](evals.md).

An eval file has top-level `config:` and `evals:` (that is how `opctl validate` tells it from
a config or a test file). Frozen fixtures take the forms of `opctl test` fixtures; a live case
names a scenario of the config's lab. CEL facts see the submission's fields: `summary`,
`root_cause`, `confidence`, `evidence` (list of text), `alternatives` (list of
`{{hypothesis, why_rejected}}`), `actions` (list of `{{action, params, reason}}`)."""


def eval_schema() -> dict[str, Any]:
    return model_schema(EvalFile, SCHEMA_NAME, "opctl eval file")


def eval_schema_text() -> str:
    return schema_json(eval_schema())


def shipped_eval_files() -> list[Path]:
    return sorted([*ROOT.glob("subjects/*/evals/*.yaml"), *ROOT.glob("examples/*/evals/*.yaml")])


def eval_reference(files: Sequence[Path]) -> Reference:
    return Reference(
        EvalFile, "Eval files (`opctl eval`)", INTRO, "EvalFile (the document)", eval_schema(), files,
        ROOT / "subjects" / "ratelimiter" / "evals" / "live.yaml", ROOT,
    )  # fmt: skip


def render_eval_reference(files: Sequence[Path]) -> str:
    return render_reference(eval_reference(files))
