"""Redis faults under a real node process: killed under load, restarted empty, stalled.

What each request is answered is asserted here; how long it took (the deadline plus at most
100 ms, measured at the HTTP client) is a figure of `benchmarks/ratelimiter.py` (part e):
wall-clock bounds in tests fail on a loaded machine without a bug.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis

from engine.lab.redis_server import RedisServer
from nodes import AUTH, TOKEN, NodeGroup, in_process_node, raw_request

pytestmark = [pytest.mark.redis, pytest.mark.slow]

DEADLINE_MS = 50
ENV = {
    "RATELIMITER_TOKEN": TOKEN,
    "RATELIMITER_REDIS_DEADLINE_MS": str(DEADLINE_MS),
    "RATELIMITER_HEARTBEAT_INTERVAL_MS": "100",
    "RATELIMITER_POLICY_REFRESH_INTERVAL_MS": "100",
}
POLICIES = {
    "fail-open": {"limit": 1_000_000, "window_ms": 60_000, "failure_mode": "open"},
    "fail-closed": {"limit": 1_000_000, "window_ms": 60_000, "failure_mode": "closed"},
    "small": {"limit": 3, "window_ms": 60_000, "algorithm": "sliding_log", "failure_mode": "closed"},
}


@dataclass(frozen=True)
class Sample:
    policy: str
    status: int
    failure_mode: str | None


async def timed_check(url: str, policy: str, key: str = "k") -> Sample:
    response = await raw_request(url, "POST", "/v1/check", {"policy": policy, "key": key})
    return Sample(policy, response.status, response.headers.get("x-ratelimit-failure-mode"))


async def until(condition: Callable[[], bool | Awaitable[bool]], timeout_s: float, what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s

    async def holds() -> bool:
        result = condition()
        return await result if inspect.isawaitable(result) else bool(result)

    while not await holds():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


async def metric(url: str, line_prefix: str) -> float:
    text = (await raw_request(url, "GET", "/metrics")).body.decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_prefix)]
    return sum(values)


async def publish_policies(url: str) -> int:
    version = 0
    for name, body in POLICIES.items():
        response = await raw_request(url, "PUT", f"/v1/policies/{name}", body, AUTH)
        assert response.status == 200, response.body
        version = response.json()["version"]
    return version


def test_redis_killed_under_load_then_restarted_empty(own_redis: RedisServer) -> None:
    with NodeGroup(own_redis.url, count=1, env=ENV, id_prefix="fault") as nodes:
        url = nodes[0].url

        async def main() -> None:
            version = await publish_policies(url)
            samples: list[Sample] = []
            after_kill: list[Sample] = []
            killed = asyncio.Event()
            stop = asyncio.Event()

            async def worker(policy: str) -> None:
                while not stop.is_set():
                    was_killed = killed.is_set()
                    sample = await timed_check(url, policy)
                    samples.append(sample)
                    if was_killed:
                        after_kill.append(sample)

            workers = [asyncio.create_task(worker(p)) for p in ("fail-open", "fail-closed") * 2]
            await until(lambda: len(samples) >= 40, 10, "load before the kill")
            await asyncio.to_thread(own_redis.kill)
            killed.set()

            async def enough_failures() -> bool:
                modes = [s.failure_mode for s in after_kill]
                return modes.count("open") >= 20 and modes.count("closed") >= 20

            await until(enough_failures, 10, "failure-mode decisions after the kill")
            stop.set()
            await asyncio.gather(*workers)

            assert all(s.status < 500 for s in samples), [s for s in samples if s.status >= 500][:3]
            for sample in after_kill:
                if sample.policy == "fail-open":
                    assert (sample.status, sample.failure_mode) == (200, "open")
                else:
                    assert (sample.status, sample.failure_mode) == (429, "closed")
            assert (await raw_request(url, "GET", "/ready")).status == 503
            assert await metric(url, 'ratelimiter_failure_mode_decisions_total{mode="open"') >= 20
            assert await metric(url, 'ratelimiter_failure_mode_decisions_total{mode="closed"') >= 20

            # Redis comes back empty: no scripts, no policies, no registry.
            await asyncio.to_thread(own_redis.start)

            async def deciding_again() -> bool:
                return (await timed_check(url, "fail-closed", "probe")).failure_mode is None

            await until(deciding_again, 10, "decisions without failure mode after the restart")
            # Exact decisions again. At a 50 ms deadline a loaded machine can push one check into
            # the failure mode, which says nothing of the limiter: such a run is tried again on a
            # fresh key (a bounded number of times).
            for attempt in range(5):
                small = [await timed_check(url, "small", f"fresh-{attempt}") for _ in range(5)]
                if all(s.failure_mode is None for s in small):
                    break
            assert [(s.status, s.failure_mode) for s in small] == [(200, None)] * 3 + [(429, None)] * 2
            assert await metric(url, "ratelimiter_script_reloads_total") >= 1

            async def ready() -> bool:
                return (await raw_request(url, "GET", "/ready")).status == 200

            await until(ready, 10, "/ready after the restart")

            raw = redis.Redis.from_url(own_redis.url)
            try:
                await until(lambda: raw.get("rl:{pol}:version") is not None, 5, "re-published policies")
                assert int(raw.get("rl:{pol}:version") or 0) == version
                assert set(raw.hkeys("rl:{pol}:data")) == {name.encode() for name in POLICIES}
            finally:
                raw.close()

            async def failures_reported() -> bool:
                listing = await raw_request(url, "GET", "/v1/nodes", headers=AUTH)
                nodes_by_id = {n["id"]: n for n in listing.json()["nodes"]}
                return nodes_by_id.get("fault-0", {}).get("failure_mode_decisions", 0) >= 40

            await until(failures_reported, 5, "the node's failure_mode_decisions in /v1/nodes")

        asyncio.run(main())
    # One JSON line per operational event, in order (the node stopped on leaving the group).
    logged = [json.loads(line) for line in nodes[0].log_path.read_text().splitlines() if line.startswith('{"ts"')]
    names = [event["event"] for event in logged]
    assert names[0] == "start" and names[-1] == "stop", names
    assert logged[0]["node"] == "fault-0" and logged[0]["redis_url"] == own_redis.url and logged[0]["workers"] == 1
    for first, then in (("redis_lost", "redis_back"), ("failure_mode_entered", "failure_mode_exited")):
        assert first in names and then in names and names.index(first) < names.index(then), names
    # (A loaded machine may add a short episode of its own before the outage.)
    assert max(e["decisions_without_redis"] for e in logged if e["event"] == "failure_mode_exited") >= 40


def test_the_start_event_redacts_the_redis_password() -> None:
    from ratelimiter_service.events import redacted_url

    assert redacted_url("redis://user:s3cret@h:6379/0") == "redis://user:***@h:6379/0"
    assert redacted_url("rediss://:s3cret@h:6379") == "rediss://:***@h:6379"
    assert redacted_url("redis+cluster://u:p%40ss@a:1,b:2") == "redis+cluster://u:***@a:1,b:2"
    assert redacted_url("redis://h:6379/0") == "redis://h:6379/0"


def test_stalled_redis_gets_failure_mode_within_the_deadline(own_redis: RedisServer) -> None:
    # Writes paused (CLIENT PAUSE WRITE blocks every script) for far longer than the checks
    # take, and unpaused by this test when they are done, so every check falls in the stall
    # however slow the machine. Reads still answer, which a node would take for a busy Redis
    # worth waiting for: this node has no such patience.
    env = {**ENV, "RATELIMITER_REDIS_BUSY_PATIENCE_MS": "0"}
    with NodeGroup(own_redis.url, count=1, env=env, id_prefix="stall") as nodes:
        url = nodes[0].url

        async def main() -> None:
            await publish_policies(url)

            async def deciding() -> bool:  # with no patience, a loaded machine may miss one
                return (await timed_check(url, "fail-closed")).failure_mode is None

            await until(deciding, 10, "decisions with Redis before the stall")
            admin = redis.Redis.from_url(own_redis.url)
            try:
                admin.execute_command("CLIENT", "PAUSE", "60000", "WRITE")
                during: list[Sample] = []
                for _ in range(10):
                    during.append(await timed_check(url, "fail-open"))
                    during.append(await timed_check(url, "fail-closed"))
            finally:
                admin.execute_command("CLIENT", "UNPAUSE")
                admin.close()
            assert {(s.policy, s.status, s.failure_mode) for s in during} == {
                ("fail-open", 200, "open"),
                ("fail-closed", 429, "closed"),
            }

            async def recovered() -> bool:
                return (await timed_check(url, "fail-closed", "after")).failure_mode is None

            await until(recovered, 5, "decisions after the pause")

        asyncio.run(main())


def test_batch_follows_each_policys_failure_mode_without_redis(own_redis: RedisServer) -> None:
    async def main() -> None:
        async with in_process_node(own_redis.url, redis_deadline_ms=DEADLINE_MS) as (_, client):
            for name, body in POLICIES.items():
                assert (await client.put(f"/v1/policies/{name}", json=body, headers=AUTH)).status_code == 200
            own_redis.kill()
            checks = [{"policy": "fail-open", "key": "a"}, {"policy": "fail-closed", "key": "a"}] * 3
            response = await client.post("/v1/check/batch", json={"checks": checks})
            assert response.status_code == 200
            results = response.json()["results"]
            assert [(r["allowed"], r["failure_mode"]) for r in results] == [(True, "open"), (False, "closed")] * 3
            # Usage is unknown without Redis: nothing claims a quota.
            assert all(r["remaining"] is None and r["reset_after_ms"] is None for r in results)
            for policy, status in (("fail-open", 200), ("fail-closed", 429)):
                single = await client.post("/v1/check", json={"policy": policy, "key": "a"})
                assert single.status_code == status and single.json()["remaining"] is None
                assert single.headers["x-ratelimit-failure-mode"] == policy.removeprefix("fail-")
                assert "ratelimit" not in single.headers and "x-ratelimit-remaining" not in single.headers
                assert single.headers["ratelimit-policy"].startswith(f'"{policy}"')
            # Management reads of the cache still work; Redis-backed ones answer 503, not 500.
            assert (await client.get("/v1/policies", headers=AUTH)).status_code == 200
            unavailable = await client.get("/v1/keys", headers=AUTH)
            assert unavailable.status_code == 503 and "Redis" in unavailable.json()["detail"]
            assert (await client.get("/ready")).status_code == 503

    asyncio.run(main())
