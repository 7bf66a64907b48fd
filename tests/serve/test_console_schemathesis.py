"""schemathesis over the console's own OpenAPI document, against a live `opctl serve` on
loopback (an approver's token, so writes reach the store): no 5xx, status codes and bodies as
documented. Driven with hypothesis directly, as tests/ratelimiter/test_schemathesis.py does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.json_server import JsonServer
from tests.serve.serve_support import APPROVER, Console, filled_store

pytestmark = pytest.mark.slow

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
AUTH = {"Authorization": f"Bearer {APPROVER}"}


@pytest.fixture(scope="module")
def live_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp_path: Path = tmp_path_factory.mktemp("fuzzed")
    with JsonServer() as server:
        console = Console.start(filled_store(tmp_path, server))
        try:
            yield console.url
        finally:
            console.stop()


@pytest.mark.parametrize(("mode", "examples"), [(GenerationMode.POSITIVE, 8), (GenerationMode.NEGATIVE, 4)])
def test_no_server_errors_and_documented_responses(live_console: str, mode: GenerationMode, examples: int) -> None:
    schema = schemathesis.openapi.from_url(f"{live_console}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    # the stream never ends: it has its own test (test_console_api.py)
    operations = [op for op in operations if op.path != "/api/v1/stream"]
    assert len(operations) == 20
    if mode is GenerationMode.NEGATIVE:  # an operation without inputs has nothing to violate
        operations = [op for op in operations if {"parameters", "requestBody"} & set(op.definition.raw)]
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def exercise(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=live_console, headers=AUTH, timeout=30, checks=CHECKS)

        exercise()
