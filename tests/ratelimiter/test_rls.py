"""Envoy's rate limit service (RLS v3) over gRPC: a real grpc client over loopback against a
running node, with envoyproxy/ratelimit's descriptor configuration."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from engine.lab.redis_server import RedisServer
from nodes import TOKEN, NodeGroup
from ratelimiter_service.rls.config import RlsConfigError, load_rls_config
from tests.ports import free_port

pytestmark = pytest.mark.redis

protos, services = grpc.protos_and_services("ratelimiter_service/rls/rls.proto")
Response = protos.RateLimitResponse

CONFIG = """
domain: messaging
descriptors:
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit: {unit: day, requests_per_unit: 3, name: marketing}
  - key: to_number
    rate_limit: {unit: day, requests_per_unit: 5}
  - key: path
    value: "/files/*"
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: ldap
    rate_limit: {unlimited: true}
  - key: remote_address
    value: 50.0.0.5
    rate_limit: {unit: second, requests_per_unit: 0}
  - key: soft
    shadow_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
---
domain: other
descriptors:
  - key: to_number
    rate_limit: {unit: second, requests_per_unit: 1000}
"""


def request(domain: str, *descriptors: tuple[tuple[tuple[str, str], ...], int | None], hits: int = 0) -> Any:
    message = protos.RateLimitRequest(domain=domain, hits_addend=hits)
    for entries, own_hits in descriptors:
        d = message.descriptors.add()
        for key, value in entries:
            entry = d.entries.add()
            entry.key, entry.value = key, value
        if own_hits is not None:
            d.hits_addend.value = own_hits
    return message


class Rls:
    def __init__(self, port: int) -> None:
        self.address = f"127.0.0.1:{port}"

    def ask(self, *messages: Any) -> list[Any]:
        async def main() -> list[Any]:
            async with grpc.aio.insecure_channel(self.address) as channel:
                stub = services.RateLimitServiceStub(channel)
                return [await stub.ShouldRateLimit(m, timeout=10) for m in messages]

        return asyncio.run(main())


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rls") / "config.yaml"
    path.write_text(CONFIG)
    return path


def node_env(config: Path, port: int, **extra: str) -> dict[str, str]:
    return {
        "RATELIMITER_TOKEN": TOKEN,
        "RATELIMITER_GRPC_PORT": str(port),
        "RATELIMITER_RLS_CONFIG": str(config),
        **extra,
    }


@pytest.fixture(scope="module")
def rls(redis_server: RedisServer, config_file: Path) -> Iterator[Rls]:
    port = free_port()
    with NodeGroup(redis_server.url, count=1, env=node_env(config_file, port), id_prefix="rls"):
        yield Rls(port)


def codes(response: Any) -> list[int]:
    return [status.code for status in response.statuses]


def test_a_configured_descriptor_is_limited_per_value(rls: Rls) -> None:
    answers = rls.ask(*[request("messaging", ((("to_number", "2061111111"),), None)) for _ in range(6)])
    assert [a.overall_code for a in answers] == [Response.OK] * 5 + [Response.OVER_LIMIT]
    first, last = answers[0].statuses[0], answers[-1].statuses[0]
    assert first.current_limit.requests_per_unit == 5 and first.current_limit.unit == Response.RateLimit.DAY
    assert first.limit_remaining == 4 and last.limit_remaining == 0
    assert last.duration_until_reset.ToMilliseconds() > 0
    # Another value of the key-only rule has its own counter.
    other = rls.ask(request("messaging", ((("to_number", "2062222222"),), None)))[0]
    assert other.overall_code == Response.OK and other.statuses[0].limit_remaining == 4


def test_nested_rules_hits_addend_and_the_aggregate_code(rls: Rls) -> None:
    nested = (("message_type", "marketing"), ("to_number", "555"))
    both = request("messaging", (nested, 2), ((("to_number", "555"),), None), hits=1)
    answer = rls.ask(both)[0]
    assert codes(answer) == [Response.OK, Response.OK]
    assert answer.statuses[0].current_limit.name == "marketing" and answer.statuses[0].limit_remaining == 1
    assert answer.statuses[1].limit_remaining == 4
    # hits_addend of the request: 2 more on the nested rule (3 per day) is over; the other is not.
    again = rls.ask(request("messaging", (nested, None), ((("to_number", "555"),), None), hits=2))[0]
    assert codes(again) == [Response.OVER_LIMIT, Response.OK] and again.overall_code == Response.OVER_LIMIT


def test_unmatched_unlimited_deny_all_shadow_and_shared_wildcards(rls: Rls) -> None:
    unmatched = rls.ask(
        request("messaging", ((("nobody", "x"),), None)),
        request("unknown-domain", ((("to_number", "1"),), None)),
        # Two entries where the configuration has one level: no match (envoyproxy/ratelimit).
        request("messaging", ((("to_number", "1"), ("extra", "y")), None)),
    )
    for answer in unmatched:
        assert answer.overall_code == Response.OK
        assert not answer.statuses[0].HasField("current_limit")
    unlimited = rls.ask(request("messaging", ((("ldap", "cn=x"),), None)))[0]
    assert unlimited.overall_code == Response.OK and unlimited.statuses[0].limit_remaining == 2**32 - 1
    denied = rls.ask(request("messaging", ((("remote_address", "50.0.0.5"),), None)))[0]
    assert denied.overall_code == Response.OVER_LIMIT
    soft = rls.ask(*[request("messaging", ((("soft", "a"),), None)) for _ in range(3)])
    assert [a.overall_code for a in soft] == [Response.OK] * 3  # shadow: counted, never enforced
    files = rls.ask(*[request("messaging", (((("path", f"/files/{i}"),)), None)) for i in range(3)])
    assert [a.overall_code for a in files] == [Response.OK, Response.OK, Response.OVER_LIMIT]


def test_with_redis_down_the_failure_mode_applies(own_redis: RedisServer, config_file: Path) -> None:
    for mode, expected in (("open", Response.OK), ("closed", Response.OVER_LIMIT)):
        port = free_port()
        env = node_env(
            config_file, port, RATELIMITER_DEFAULT_FAILURE_MODE=mode, RATELIMITER_REDIS_DEADLINE_MS="100"
        )
        with NodeGroup(own_redis.url, count=1, env=env, id_prefix=f"rls-{mode}"):
            service = Rls(port)
            assert service.ask(request("messaging", ((("to_number", "9"),), None)))[0].overall_code == Response.OK
            own_redis.kill()
            try:
                answer = service.ask(request("messaging", ((("to_number", "9"),), None)))[0]
                assert answer.overall_code == expected
            finally:
                own_redis.start()


def test_configuration_mistakes_name_the_file_and_the_place(tmp_path: Path) -> None:
    cases = {
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n": "unit",
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {requests_per_unit: 1}\n": "needs unit",
        "domain: d\ndescriptors:\n  - value: v\n": "key",
        "domain: d\n---\ndomain: d\n": "defined twice",
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1, replaces: [{name: x}]}\n": "replaces",
    }
    for text, message in cases.items():
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(RlsConfigError, match=message) as error:
            load_rls_config(str(path), algorithm="sliding_window", failure_mode="open")
        assert str(path) in str(error.value)
