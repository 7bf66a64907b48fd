"""Pieces of the service without HTTP: settings, Redis client, deadline, headers, entry point."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ratelimiter_service.app import Node
from ratelimiter_service.headers import decision_headers
from ratelimiter_service.redis_client import RedisProgress, build_redis_client, within_deadline
from ratelimiter_service.settings import Settings, SettingsError, load_settings, parse_cluster_url


def test_settings_mistakes_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATELIMITER_STALE_AFTER_MS", "5000")
    monkeypatch.setenv("RATELIMITER_DOWN_AFTER_MS", "1000")
    monkeypatch.setenv("RATELIMITER_PORT", "99999")
    with pytest.raises(SettingsError) as error:
        load_settings()
    message = str(error.value)
    assert "RATELIMITER_PORT" in message
    monkeypatch.setenv("RATELIMITER_PORT", "8080")
    with pytest.raises(SettingsError, match="RATELIMITER_STALE_AFTER_MS .* must be below RATELIMITER_DOWN_AFTER_MS"):
        load_settings()


def test_policy_freeze_and_big_exact_logs_are_refused() -> None:
    with pytest.raises(ValueError, match="RATELIMITER_TEST_MODE"):
        Settings(policy_refresh=False)
    assert Settings(policy_refresh=False, test_mode=True).policy_refresh is False
    with pytest.raises(ValueError, match="RATELIMITER_MAX_LOG_LIMIT"):
        Settings(default_algorithm="sliding_log", default_limit=5000)
    with pytest.raises(ValueError):
        Settings(redis_retries=2)  # at most one retry
    with pytest.raises(ValueError, match="default policy is not valid: sliding_window counts at most 49,999,999"):
        Settings(default_limit=50_000_000)
    with pytest.raises(ValueError, match="default policy is not valid: RATELIMITER_DEFAULT_WINDOW_MS: Input should be less"):
        Settings(default_window_ms=10**15)
    assert Settings(default_limit=50_000_000, default_algorithm="gcra").default_policy.limit == 50_000_000


def test_entry_point_reports_bad_settings_without_a_traceback() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATELIMITER_")}
    env["RATELIMITER_HEARTBEAT_INTERVAL_MS"] = "soon"
    env["RATELIMITER_REDIS_URL"] = "localhost:6379"
    done = subprocess.run(
        [sys.executable, "-m", "ratelimiter_service"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "RATELIMITER_HEARTBEAT_INTERVAL_MS" in done.stderr
    assert "RATELIMITER_REDIS_URL: 'localhost:6379' is not a Redis URL" in done.stderr


def test_cluster_urls() -> None:
    assert parse_cluster_url("redis+cluster://a:1,b:2") == ([("a", 1), ("b", 2)], None, None)
    assert parse_cluster_url("rediss+cluster://u:p%40ss@h:7000/0") == ([("h", 7000)], "u", "p@ss")
    with pytest.raises(ValueError, match="not host:port"):
        parse_cluster_url("redis+cluster://a:1,b")
    client = build_redis_client(Settings(redis_url="redis+cluster://127.0.0.1:7000,127.0.0.1:7001"))
    assert isinstance(client, RedisCluster)
    for wrong in ("ftp://nowhere", "127.0.0.1:6379", "redis+cluster://a:1,b"):
        with pytest.raises(ValueError, match="not a Redis URL|not host:port"):
            Settings(redis_url=wrong)


def test_client_has_the_deadline_and_one_retry() -> None:
    client = build_redis_client(Settings(redis_url="redis://127.0.0.1:1/0", redis_deadline_ms=30))
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.03 and kwargs["socket_connect_timeout"] == 0.03
    assert kwargs["retry"].get_retries() == 1

    async def refused() -> float:
        started = time.perf_counter()
        with pytest.raises(Exception):
            await within_deadline(client.ping(), 0.03)
        await client.aclose()
        return time.perf_counter() - started

    assert asyncio.run(refused()) < 1.0


def test_within_deadline_turns_a_transport_failure_into_a_redis_error() -> None:
    async def transport_closed() -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed")

    async def main() -> None:
        with pytest.raises(RedisConnectionError, match="the handler is closed"):
            await within_deadline(transport_closed(), 1.0)

    asyncio.run(main())


def test_within_deadline_times_out_and_never_loses_a_cancellation() -> None:
    async def main() -> None:
        with pytest.raises(RedisTimeoutError):
            await within_deadline(asyncio.sleep(10), 0.01)
        assert await within_deadline(asyncio.sleep(0, "value"), 1) == "value"

        async def stubborn() -> str:
            # Like redis-py's reads on Python 3.11: swallows a cancellation once the reply is in.
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                pass
            return "late"

        caller = asyncio.create_task(within_deadline(stubborn(), 10))
        await asyncio.sleep(0.01)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller

    asyncio.run(main())


@given(
    limit=st.integers(1, 10**9),
    window_ms=st.integers(1, 10**10),
    remaining=st.integers(-5, 10**9),
    reset_ms=st.integers(0, 10**10),
    retry_ms=st.integers(0, 10**10),
    allowed=st.booleans(),
)
def test_headers_round_up_and_agree(
    limit: int, window_ms: int, remaining: int, reset_ms: int, retry_ms: int, allowed: bool
) -> None:
    headers = decision_headers(
        policy="p", limit=limit, window_ms=window_ms, allowed=allowed, remaining=remaining,
        reset_after_ms=reset_ms, retry_after_ms=retry_ms,
    )
    window_s = int(headers["RateLimit-Policy"].rsplit("w=", 1)[1])
    assert headers["RateLimit-Policy"] == f'"p";q={limit};w={window_s}'
    assert window_s >= 1 and window_s * 1000 >= window_ms and (window_s - 1) * 1000 < max(window_ms, 1000)
    reset_s = int(headers["X-RateLimit-Reset"])
    assert reset_s * 1000 >= reset_ms > (reset_s - 1) * 1000 or reset_ms == reset_s == 0
    assert headers["RateLimit"] == f'"p";r={max(0, remaining)};t={reset_s}'
    assert headers["X-RateLimit-Remaining"] == str(max(0, remaining))
    if allowed:
        assert "Retry-After" not in headers
    else:
        retry_s = int(headers["Retry-After"])
        assert retry_s >= 1 and retry_s * 1000 >= retry_ms
    assert "X-RateLimit-Failure-Mode" not in headers


def test_a_busy_redis_gets_patience_a_silent_one_does_not() -> None:
    async def main() -> None:
        progress = RedisProgress()

        async def keeps_answering() -> None:  # other calls keep getting replies
            for _ in range(20):
                await within_deadline(asyncio.sleep(0.005), 1, progress=progress)

        answering = asyncio.create_task(keeps_answering())
        assert await within_deadline(asyncio.sleep(0.05, "slow"), 0.02, progress=progress, patience_s=1) == "slow"
        await answering

        silent = RedisProgress()  # nothing answered recently: fail after about two deadlines
        started = time.perf_counter()
        with pytest.raises(RedisTimeoutError):
            await within_deadline(asyncio.sleep(1), 0.02, progress=silent, patience_s=1)
        assert time.perf_counter() - started < 0.5

        # Patience is a cap, even while Redis answers other calls.
        answering = asyncio.create_task(keeps_answering())
        with pytest.raises(RedisTimeoutError):
            await within_deadline(asyncio.sleep(1), 0.02, progress=progress, patience_s=0.04)
        answering.cancel()

    asyncio.run(main())


def test_a_slow_close_of_the_redis_client_does_not_fail_the_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-py gives each connection's close the connect timeout (the 50 ms deadline) and raises
    past it, which a loaded machine can reach; the node still shuts down."""
    settings = Settings(redis_url="redis://127.0.0.1:1/0")
    client = build_redis_client(settings)

    async def slow_close() -> None:
        raise RedisTimeoutError("Timed out closing connection after 0.05")

    monkeypatch.setattr(client, "aclose", slow_close)
    asyncio.run(Node(settings, client, owns_client=True).stop())
