"""Pieces of the service without HTTP: settings, Redis client, deadline, headers, entry point."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.lab.redis_server import RedisServer
from ratelimiter_service.app import Node
from ratelimiter_service.headers import decision_headers
from ratelimiter_service.limiter import Limiter
from ratelimiter_service.policies import Policy
from ratelimiter_service.redis_client import (
    HiredisPacking,
    RedisProgress,
    build_redis_client,
    error_kind,
    keeps_waiting,
    warm_up,
    within_deadline,
)
from tests.ports import free_port

POLICY = Policy(name="units", limit=100, window_ms=60_000)
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


def test_client_has_the_deadline_and_redis_py_retries_nothing() -> None:
    client = build_redis_client(Settings(redis_url="redis://127.0.0.1:1/0", redis_deadline_ms=30))
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.03 and kwargs["socket_connect_timeout"] == 0.03
    # redis-py would also retry after a read timeout, when a script may already have run.
    assert kwargs["retry"].get_retries() == 0

    async def refused() -> BaseException:
        # Refused, or (on a loaded machine) not refused within the 30 ms connect timeout.
        with pytest.raises((RedisConnectionError, RedisTimeoutError)) as error:
            await within_deadline(client.ping(), 1.0)
        await client.aclose()
        return error.value

    assert error_kind(asyncio.run(refused())) == "unsent"


_ARG = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",))), st.binary(), st.integers(-(2**63), 2**63 - 1)
)


@given(command=st.sampled_from(["EVALSHA", "CLIENT PAUSE", b"GET", b"SCRIPT LOAD"]), args=st.lists(_ARG, max_size=8))
def test_commands_are_packed_by_hiredis_into_redis_pys_bytes(command: str | bytes, args: list[object]) -> None:
    for url in ("redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0", "unix:///tmp/none.sock"):
        pool = build_redis_client(Settings(redis_url=url)).connection_pool
        connection = pool.make_connection()
        assert isinstance(connection, HiredisPacking)
        python_packer = super(HiredisPacking, connection)
        assert b"".join(connection.pack_command(command, *args)) == b"".join(python_packer.pack_command(command, *args))
        commands = [(command, *args), ("GET", "k")]
        assert b"".join(connection.pack_commands(commands)) == b"".join(
            b"".join(python_packer.pack_command(*c)) for c in commands
        )


def test_a_refused_connection_is_retried_once_and_is_unsent() -> None:
    retried: list[BaseException] = []

    async def main() -> None:
        client = build_redis_client(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
        limiter = Limiter(client, retries=1, on_retry=retried.append)
        try:
            with pytest.raises((RedisConnectionError, RedisTimeoutError)) as error:
                await limiter.check(POLICY, "k")
            assert error_kind(error.value) == "unsent"
        finally:
            await client.aclose()

    asyncio.run(main())
    assert len(retried) == 1 and error_kind(retried[0]) == "unsent"


def test_a_check_that_timed_out_after_sending_is_not_sent_again(own_redis: RedisServer) -> None:
    """Redis busy in another script: the check is sent, its read times out, and the script
    runs once the other ends. A retry after the timeout (redis-py's default) would queue it
    twice, and count it twice."""
    retried: list[BaseException] = []

    async def main() -> None:
        client = build_redis_client(Settings(redis_url=own_redis.url, redis_deadline_ms=50))
        limiter = Limiter(client, retries=1, on_retry=retried.append)
        await warm_up(client, 4)
        assert (await limiter.check(POLICY, "other")).allowed  # scripts loaded, pool warm
        busy = asyncio.create_task(asyncio.to_thread(_busy_redis, own_redis.url))
        await asyncio.to_thread(_until_redis_is_busy, own_redis.url)
        with pytest.raises(RedisTimeoutError) as error:
            await limiter.check(POLICY, "twice?")
        assert error_kind(error.value) == "timeout"
        await busy
        await client.aclose()

    asyncio.run(main())
    assert asyncio.run(_usage_of(own_redis.url, "twice?")) == 1 and retried == []


def _busy_redis(url: str) -> None:
    """Half a second or more of one script, below Redis' busy-script limit of 5 s."""
    client = redis.Redis.from_url(url)
    try:
        client.eval("for i = 1, 100000000 do end return 1", 0)
    finally:
        client.close()


def _until_redis_is_busy(url: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=0.05)
    try:
        while True:
            try:
                client.ping()
            except redis.exceptions.TimeoutError:
                return
    finally:
        client.close()


async def _usage_of(url: str, key: str) -> int:
    client = build_redis_client(Settings(redis_url=url, redis_deadline_ms=2000))
    try:
        return (await Limiter(client).usage(POLICY, key)).used
    finally:
        await client.aclose()


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
        assert await within_deadline(asyncio.sleep(0.05, "slow"), 0.02, progress=progress, patience_s=10) == "slow"
        await answering

        # Nothing answered recently: the call is given up after its deadline, never awaited to
        # its end (it never ends), whatever the patience.
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with pytest.raises(RedisTimeoutError):
            await within_deadline(never, 0.02, progress=RedisProgress(), patience_s=3600)
        assert not never.done() or never.cancelled()

    asyncio.run(main())


@given(
    started=st.integers(0, 10**6),
    waited=st.integers(0, 100),
    since_reply=st.integers(0, 100),
    deadline=st.integers(1, 10),
    patience=st.integers(0, 100),
)
def test_patience_is_a_cap_and_needs_recent_replies(
    started: int, waited: int, since_reply: int, deadline: int, patience: int
) -> None:
    """The rule of a busy node's patience, on injected times (whole numbers: exact floats)."""
    now = started + waited
    waits = keeps_waiting(now=now, started=started, last_reply=now - since_reply, deadline_s=deadline, patience_s=patience)
    if waits:
        assert since_reply < deadline  # Redis answered another call within the last deadline
        assert waited + deadline <= patience  # one more deadline stays within patience
    elif since_reply < deadline and waited + deadline <= patience:
        raise AssertionError("gave up on a busy Redis before its patience")


def test_a_slow_close_of_the_redis_client_does_not_fail_the_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-py gives each connection's close the connect timeout (the 50 ms deadline) and raises
    past it, which a loaded machine can reach; the node still shuts down: its background tasks
    end, and the close was attempted once."""
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = build_redis_client(settings)
    closes: list[str] = []
    real_close = client.aclose

    async def slow_close() -> None:
        closes.append("close")
        await real_close()
        raise RedisTimeoutError("Timed out closing connection after 0.05")

    monkeypatch.setattr(client, "aclose", slow_close)

    async def main() -> list[asyncio.Task[None]]:
        node = Node(settings, client, owns_client=True)
        await node.start()  # Redis is not there: the node starts on its built-in policies
        tasks = list(node._tasks)
        assert {task.get_name() for task in tasks} == {"policy-refresher", "heartbeat"}
        await node.stop()
        assert node._tasks == []
        return tasks

    tasks = asyncio.run(main())
    assert all(task.done() for task in tasks) and closes == ["close"]


def test_the_settings_table_in_the_docs_is_current() -> None:
    from ratelimiter_service.settings_doc import DOC, documented

    text = DOC.read_text("utf-8")
    assert documented(text) == text, "stale: run python -m ratelimiter_service.settings_doc"
    for name in Settings.model_fields:
        assert f"`RATELIMITER_{name.upper()}`" in text
