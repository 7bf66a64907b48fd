"""The `submit_diagnosis` input schema: valid JSON Schema (draft 2020-12) generated from the
declared actions, accepting what the pydantic Submission accepts."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from engine.config.models import Action
from engine.config.validate import load_config
from engine.diagnose.schema import submission_schema
from engine.diagnose.types import MAX_ACTIONS, Submission

META = jsonschema.Draft202012Validator.META_SCHEMA


def action(name: str, params: dict[str, Any]) -> Action:
    return Action.model_validate(
        {"name": name, "description": f"do {name}", "params": params, "http": {"target": "api", "method": "POST", "path": "/x"}}
    )


def submission(*recommended: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": "s",
        "root_cause": "r",
        "confidence": 0.5,
        "evidence": ["e"],
        "alternatives_considered": [{"hypothesis": "h", "why_rejected": "w"}],
        "recommended_actions": list(recommended),
    }


def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_shipped_config_schema_is_valid_and_guides_every_action() -> None:
    loaded = load_config("configs/ratelimiter.yaml", env={})
    schema = submission_schema(loaded.config.actions)
    jsonschema.validate(schema, META)  # the metaschema itself accepts it
    check = validator(schema)
    good = submission(
        {"action": "deregister_node", "params": {"node_id": "n2"}, "reason": "dead"},
        {"action": "raise_redis_maxmemory", "params": {"bytes": 2 * 1024 * 1024}, "reason": "room"},
        {"action": "set_policy", "params": {"name": "api", "limit": 10, "window_ms": 1000}, "reason": "fix"},
    )
    assert check.is_valid(good)
    Submission.model_validate(good)
    branches = schema["properties"]["recommended_actions"]["items"]["anyOf"]
    assert [b["properties"]["action"]["const"] for b in branches] == [a.name for a in loaded.config.actions]


@pytest.mark.parametrize(
    "recommended",
    [
        {"action": "delete_policy", "params": {"name": "default"}, "reason": "undeclared"},
        {"action": "deregister_node", "params": {}, "reason": "missing param"},
        {"action": "deregister_node", "params": {"node_id": "n2", "force": True}, "reason": "extra param"},
        {"action": "raise_redis_maxmemory", "params": {"bytes": 5}, "reason": "below the minimum"},
        {"action": "deregister_node", "params": {"node_id": "n2"}},
    ],
)
def test_schema_rejects_what_the_gate_would_refuse(recommended: dict[str, Any]) -> None:
    loaded = load_config("configs/ratelimiter.yaml", env={})
    assert not validator(submission_schema(loaded.config.actions)).is_valid(submission(recommended))


def test_without_actions_nothing_may_be_recommended() -> None:
    check = validator(submission_schema([]))
    assert check.is_valid(submission())
    assert not check.is_valid(submission({"action": "x", "params": {}, "reason": "r"}))


def test_local_references_of_a_params_schema_are_rebased() -> None:
    params = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://example.com/params",
        "type": "object",
        "required": ["target"],
        "properties": {"target": {"$ref": "#/$defs/node"}, "note": {"const": "#/not/a/ref"}},
        "$defs": {"node": {"type": "string", "pattern": "^n[0-9]+$"}},
    }
    schema = submission_schema([action("first", {"type": "object"}), action("second", params)])
    embedded = schema["properties"]["recommended_actions"]["items"]["anyOf"][1]["properties"]["params"]
    assert "$schema" not in embedded and "$id" not in embedded
    assert embedded["properties"]["note"] == {"const": "#/not/a/ref"}  # instance values stay as written
    check = validator(schema)
    assert check.is_valid(submission({"action": "second", "params": {"target": "n7"}, "reason": "r"}))
    assert not check.is_valid(submission({"action": "second", "params": {"target": "x7"}, "reason": "r"}))


def test_bounds_of_schema_and_model_agree() -> None:
    loaded = load_config("configs/ratelimiter.yaml", env={})
    check = validator(submission_schema(loaded.config.actions))
    one = {"action": "deregister_node", "params": {"node_id": "n2"}, "reason": "dead"}
    too_many = submission(*[one] * (MAX_ACTIONS + 1))
    assert not check.is_valid(too_many)
    with pytest.raises(ValidationError):
        Submission.model_validate(too_many)


names = st.from_regex(r"^[a-z_][a-z0-9_]{0,20}$", fullmatch=True)
leaf_schemas = st.sampled_from(
    [
        {"type": "string", "minLength": 1},
        {"type": "integer", "minimum": 0},
        {"type": "boolean"},
        {"enum": ["a", "b"]},
    ]
)
param_schemas = st.dictionaries(names, leaf_schemas, max_size=4).map(
    lambda props: {"type": "object", "properties": props, "required": sorted(props), "additionalProperties": False}
)
EXAMPLE = {"string": "x", "integer": 3, "boolean": True}


def example_params(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        name: (sub["enum"][0] if "enum" in sub else EXAMPLE[sub["type"]]) for name, sub in schema["properties"].items()
    }


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(names, param_schemas, min_size=1, max_size=5), st.data())
def test_generated_schema_is_valid_for_any_declared_actions(declared: dict[str, dict[str, Any]], data: st.DataObject) -> None:
    actions = [action(name, params) for name, params in declared.items()]
    schema = submission_schema(actions)
    check = validator(schema)
    chosen = data.draw(st.sampled_from(sorted(declared)))
    good = submission({"action": chosen, "params": example_params(declared[chosen]), "reason": "r"})
    assert check.is_valid(good)
    Submission.model_validate(good)  # what the schema accepts, the model accepts
    undeclared = data.draw(names.filter(lambda n: n not in declared))
    assert not check.is_valid(submission({"action": undeclared, "params": {}, "reason": "r"}))
    for field in ("summary", "confidence", "recommended_actions"):
        broken = {k: v for k, v in good.items() if k != field}
        assert not check.is_valid(broken)
        with pytest.raises(ValidationError):
            Submission.model_validate(broken)
