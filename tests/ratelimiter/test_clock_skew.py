"""Nodes whose system clocks differ by minutes (libfaketime) decide identically.

Every decision takes its time from Redis (`TIME` inside the scripts) and heartbeats are stamped
and judged with Redis time, so a node's wrong clock changes nothing it answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import httpx
import pytest

from nodes import AUTH, TOKEN, NodeGroup, find_libfaketime

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.skipif(find_libfaketime() is None, reason="needs libfaketime (apt-get install faketime)"),
]

OFFSETS = ["+0", "+7m", "-5m"]


@pytest.fixture(scope="module")
def skewed_nodes(redis_server: object) -> Iterator[NodeGroup]:
    url = redis_server.url  # type: ignore[attr-defined]
    env = {"RATELIMITER_TOKEN": TOKEN, "RATELIMITER_HEARTBEAT_INTERVAL_MS": "100"}
    with NodeGroup(url, count=3, env=env, clock_offsets=OFFSETS, id_prefix="skew") as nodes:
        yield nodes


def test_the_node_clocks_really_differ(skewed_nodes: NodeGroup) -> None:
    """uvicorn's Date header comes from the process clock: it shows the faked offsets."""
    dates = [parsedate_to_datetime(httpx.get(n.url + "/health").headers["date"]) for n in skewed_nodes.nodes]
    ahead = (dates[1] - dates[0]).total_seconds()
    behind = (dates[2] - dates[0]).total_seconds()
    assert 420 - 5 <= ahead <= 420 + 5
    assert -300 - 5 <= behind <= -300 + 5


@pytest.mark.parametrize("algorithm", ["sliding_window", "sliding_log", "gcra"])
def test_skewed_nodes_decide_like_an_unskewed_one(skewed_nodes: NodeGroup, algorithm: str) -> None:
    policy = f"skew-{algorithm}"

    async def main() -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[tuple[int, int]]]:
        async with httpx.AsyncClient(timeout=5) as client:
            put = await client.put(
                f"{skewed_nodes[0].url}/v1/policies/{policy}",
                json={"limit": 5, "window_ms": 60_000, "algorithm": algorithm},
                headers=AUTH,
            )
            assert put.status_code == 200
            for node in skewed_nodes.nodes:
                await client.post(f"{node.url}/v1/policies/reload", headers=AUTH)

            async def sequence(key: str, nodes: list[str]) -> list[tuple[int, int]]:
                seen = []
                for i in range(8):
                    response = await client.post(
                        f"{nodes[i % len(nodes)]}/v1/check", json={"policy": policy, "key": key}
                    )
                    body = response.json()
                    seen.append((response.status_code, body["remaining"], body["retry_after_ms"]))
                return seen

            urls = [n.url for n in skewed_nodes.nodes]
            reference = await sequence("alone", urls[:1])
            ahead_and_behind = await sequence("mixed", urls[1:])
            all_three = await sequence("all", urls)
            return reference, ahead_and_behind, all_three

    reference, mixed, all_three = asyncio.run(main())
    assert [status for status, *_ in reference] == [200] * 5 + [429] * 3
    for other in (mixed, all_three):
        # Statuses and remaining agree exactly. Retry times move with real time between the
        # sequences (run one after the other), never by the minutes the clocks are apart.
        assert [(status, remaining) for status, remaining, _ in other] == [(s, r) for s, r, _ in reference]
        for (_, _, retry), (_, _, expected) in zip(other, reference):
            assert abs(retry - expected) < 2_000, (other, reference)


def test_skewed_nodes_are_up_in_the_registry(skewed_nodes: NodeGroup) -> None:
    async def main() -> dict[str, str]:
        async with httpx.AsyncClient(timeout=5) as client:
            async with asyncio.timeout(10):
                while True:
                    nodes = (await client.get(f"{skewed_nodes[2].url}/v1/nodes", headers=AUTH)).json()["nodes"]
                    states = {n["id"]: n["state"] for n in nodes if n["id"].startswith("skew-")}
                    if len(states) == 3:
                        return states
                    await asyncio.sleep(0.05)

    assert asyncio.run(main()) == {"skew-0": "up", "skew-1": "up", "skew-2": "up"}


def test_killed_skewed_nodes_turn_stale_then_down(redis_server: object) -> None:
    """Liveness is judged on Redis time: a killed node whose clock runs 5 minutes ahead (or
    behind) turns stale and then down on schedule, as an unskewed one does."""
    url = redis_server.url  # type: ignore[attr-defined]
    env = {
        "RATELIMITER_TOKEN": TOKEN,
        "RATELIMITER_HEARTBEAT_INTERVAL_MS": "100",
        "RATELIMITER_STALE_AFTER_MS": "600",
        "RATELIMITER_DOWN_AFTER_MS": "1200",
    }
    with NodeGroup(url, count=3, env=env, clock_offsets=["+0", "+5m", "-5m"], id_prefix="liveness") as nodes:

        async def states(client: httpx.AsyncClient) -> dict[str, str]:
            listing = (await client.get(f"{nodes[0].url}/v1/nodes", headers=AUTH)).json()["nodes"]
            return {n["id"]: n["state"] for n in listing if n["id"].startswith("liveness-")}

        async def main() -> list[dict[str, str]]:
            seen: list[dict[str, str]] = []
            async with httpx.AsyncClient(timeout=5) as client:
                async with asyncio.timeout(20):
                    while await states(client) != dict.fromkeys(("liveness-0", "liveness-1", "liveness-2"), "up"):
                        await asyncio.sleep(0.05)
                    nodes[1].kill()
                    nodes[2].kill()
                    while True:
                        now = await states(client)
                        seen.append(now)
                        if now["liveness-1"] == now["liveness-2"] == "down":
                            return seen
                        await asyncio.sleep(0.05)

        seen = asyncio.run(main())
        assert all(s["liveness-0"] == "up" for s in seen)
        rank = {"up": 0, "stale": 1, "down": 2}
        for killed in ("liveness-1", "liveness-2"):
            order = [rank[s[killed]] for s in seen]
            # Only forward (up, stale, down), never back: a skewed clock neither revives a dead
            # node nor kills it early. (A slow poll may miss the stale phase.)
            assert order == sorted(order) and order[-1] == 2, [s[killed] for s in seen]
