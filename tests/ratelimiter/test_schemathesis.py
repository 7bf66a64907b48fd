"""schemathesis over the node's own OpenAPI document, against a live node on loopback.

Checks: no 5xx, status codes and bodies as documented. Per operation 5 schema-valid and 3
schema-violating requests (about 95 in all). Random policy names are almost never known, so
half of the cases are steered to the built-in `default` policy to reach the deciding code.
The operations are driven with hypothesis directly: schemathesis' lazy pytest loader fails
with this pytest version.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from nodes import AUTH, TOKEN, NodeGroup

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live_node(redis_server: object) -> Iterator[str]:
    url = redis_server.url  # type: ignore[attr-defined]
    with NodeGroup(url, count=1, env={"RATELIMITER_TOKEN": TOKEN}, id_prefix="fuzz") as nodes:
        yield nodes[0].url


def steer_to_known_policy(case: schemathesis.Case) -> None:
    if isinstance(case.path_parameters, dict) and "policy" in case.path_parameters:
        case.path_parameters["policy"] = "default"
    body = case.body
    if isinstance(body, dict):
        items = body.get("checks") if isinstance(body.get("checks"), list) else [body]
        for item in items:
            if isinstance(item, dict) and "policy" in item:
                item["policy"] = "default"


@pytest.mark.parametrize(("mode", "examples"), [(GenerationMode.POSITIVE, 5), (GenerationMode.NEGATIVE, 3)])
def test_no_server_errors_and_documented_responses(live_node: str, mode: GenerationMode, examples: int) -> None:
    schema = schemathesis.openapi.from_url(f"{live_node}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13
    if mode is GenerationMode.NEGATIVE:  # an operation without inputs has nothing to violate
        operations = [op for op in operations if {"parameters", "requestBody"} & set(op.definition.raw)]
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode), steer=st.booleans())
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def exercise(case: schemathesis.Case, steer: bool) -> None:
            if steer:
                steer_to_known_policy(case)
            case.call_and_validate(base_url=live_node, headers=AUTH, timeout=10, checks=CHECKS)

        exercise()
