"""Shared fixtures: a real redis-server on a free loopback port, a clean environment."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from engine.lab.redis_server import RedisServer
from tests.ports import free_port


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session; tests that need isolation use `redis_url`."""
    server = RedisServer(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """URL of the session server, flushed before each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A dedicated redis-server a test may kill, pause or restart."""
    server = RedisServer(free_port()).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_anthropic_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach the real Claude API: an ambient key must not switch providers."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    os.environ.setdefault("OPCTL_TESTING", "1")
