"""JSON Schemas generated from pydantic models: the config language's, and the helper that the
lab and test file languages use for theirs (engine.schemas)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from engine.config.models import Config
from engine.durations import DURATION_PATTERN, format_duration

SCHEMA_BASE = "https://opctl.dev/schemas/"
SCHEMA_ID = SCHEMA_BASE + "opctl.schema.json"


def model_schema(model: type[BaseModel], file_name: str, title: str) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True)
    durations_as_text(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_BASE + file_name,
        "title": title,
        **schema,
    }


def config_schema() -> dict[str, Any]:
    return model_schema(Config, "opctl.schema.json", "opctl config")


def schema_json(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def config_schema_text() -> str:
    return schema_json(config_schema())


def durations_as_text(node: Any) -> None:
    """Defaults of duration fields are held as seconds; show them as editors expect: "1m"."""
    if isinstance(node, dict):
        if node.get("pattern") == DURATION_PATTERN and isinstance(node.get("default"), (int, float)):
            node["default"] = format_duration(float(node["default"]))
        for value in node.values():
            durations_as_text(value)
    elif isinstance(node, list):
        for value in node:
            durations_as_text(value)
