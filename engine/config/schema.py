"""The JSON Schema of the config language, generated from the models."""

from __future__ import annotations

import json
from typing import Any

from engine.config.models import Config
from engine.durations import DURATION_PATTERN, format_duration

SCHEMA_ID = "https://opctl.dev/schemas/opctl.schema.json"


def config_schema() -> dict[str, Any]:
    schema = Config.model_json_schema(by_alias=True)
    durations_as_text(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "opctl config",
        **schema,
    }


def config_schema_text() -> str:
    return json.dumps(config_schema(), indent=2, sort_keys=True) + "\n"


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
