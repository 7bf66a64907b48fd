"""The JSON Schemas of opctl's file languages (`opctl schema [config|lab|test|eval]`), written
to schemas/ for editors: start a file with `# yaml-language-server: $schema=<path>/<file>`."""

from __future__ import annotations

from typing import Any

from engine.config.schema import config_schema, model_schema, schema_json
from engine.evals.docs import SCHEMA_NAME as EVAL_SCHEMA, eval_schema
from engine.lab.models import Lab
from engine.testing.model import TestFile

SCHEMA_FILES = {"config": "opctl.schema.json", "lab": "opctl-lab.schema.json", "test": "opctl-test.schema.json", "eval": EVAL_SCHEMA}


def schema_of(kind: str) -> dict[str, Any]:
    if kind == "config":
        return config_schema()
    if kind == "lab":
        return model_schema(Lab, SCHEMA_FILES["lab"], "opctl lab file")
    if kind == "test":
        return model_schema(TestFile, SCHEMA_FILES["test"], "opctl test file")
    if kind == "eval":
        return eval_schema()
    raise ValueError(f"no schema for {kind!r}; known: {', '.join(SCHEMA_FILES)}")


def schema_text(kind: str) -> str:
    return schema_json(schema_of(kind))
