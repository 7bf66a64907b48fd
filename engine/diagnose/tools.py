"""Read-only tools for the model: one `observe_<name>` tool per declared observation.

A tool call re-runs the declared observation through the engine's `observe` function (the model
chooses which, never how: no arguments). Results are redacted and trimmed like the prompt, and
reach the model as data inside a tool_result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from engine.config.models import Config
from engine.observe import ObservationResult
from engine.observe.values import one_line
from engine.redact import Redactor
from engine.trim import trim

Observe = Callable[[str], Awaitable[ObservationResult]]

TOOL_PREFIX = "observe_"
TOOL_NAME_MAX = 64  # the Messages API's limit on tool names
TOOL_RESULT_BUDGET = 8_000


@dataclass(frozen=True)
class ObservationTools:
    """Tool definitions for the Messages API and which observation each tool re-runs."""

    definitions: tuple[dict[str, Any], ...]
    observation_of: dict[str, str]


def tool_name(observation: str) -> str:
    name = TOOL_PREFIX + observation
    if len(name) <= TOOL_NAME_MAX:
        return name
    # observation names may be 64 characters; keep the tool name unique and within the limit
    digest = hashlib.sha256(observation.encode()).hexdigest()[:8]
    return f"{name[: TOOL_NAME_MAX - 9]}_{digest}"


def observation_tools(config: Config) -> ObservationTools:
    definitions = []
    observation_of = {}
    for name, obs in config.observations.items():
        tool = tool_name(name)
        observation_of[tool] = name
        about = f" {obs.description}" if obs.description else ""
        definitions.append(
            {
                "name": tool,
                "description": (
                    f"Re-run the declared {obs.kind} observation `{name}` now and return its current value "
                    f"(read-only).{about}"
                ),
                "input_schema": {"type": "object", "properties": {}, "additionalProperties": False},
            }
        )
    return ObservationTools(tuple(definitions), observation_of)


async def run_observation(observe: Observe, observation: str, redactor: Redactor) -> tuple[str, bool]:
    """(tool result text, is_error) for one re-run of an observation."""
    try:
        result = await observe(observation)
    except Exception as exc:  # the tool's failure is the model's information, not the engine's crash
        payload: dict[str, Any] = {"ok": False, "error": f"{type(exc).__name__}: {one_line(str(exc))}"}
    else:
        payload = {"ok": True, "value": result.value} if result.ok else {"ok": False, "error": result.error}
    text = json.dumps(trim(redactor.value(payload), TOOL_RESULT_BUDGET), sort_keys=True, default=str)
    return text, not payload["ok"]
