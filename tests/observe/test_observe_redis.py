"""redis observations against the real redis-server of the fixtures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis

from observe_support import make_config
from engine.config.validate import LoadedConfig
from engine.lab.redis_server import RedisServer
from tests.ports import free_port
from engine.observe import ObservationResult, Observer
from engine.observe.redis_source import reply_value

pytestmark = pytest.mark.redis
T = TypeVar("T")


def run_with(loaded: LoadedConfig, body: Callable[[Observer], Awaitable[T]]) -> T:
    async def main() -> T:
        observer = Observer(loaded)
        try:
            return await body(observer)
        finally:
            await observer.aclose()

    return asyncio.run(main())


def observe_commands(url: str | list[str], commands: dict[str, list[Any]], **target: Any) -> dict[str, ObservationResult]:
    spec = {"urls": url, **target} if isinstance(url, list) else {"url": url, **target}
    loaded = make_config({"db": spec}, {name: {"redis": {"target": "db", "command": cmd}} for name, cmd in commands.items()})
    return run_with(loaded, lambda o: o.observe_all())


def test_info_dbsize_and_plain_replies(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("rl:a", "1")
    client.hset("h", mapping={"f": "v", "n": "2"})
    client.zadd("z", {"m": 1.5})
    client.expire("rl:a", 100)
    client.close()
    results = observe_commands(
        redis_url,
        {
            "memory": ["INFO", "memory"],
            "keyspace": ["INFO", "keyspace"],
            "size": ["DBSIZE"],
            "ping": ["PING"],
            "hash": ["HGETALL", "h"],
            "card": ["ZCARD", "z"],
            "ttl": ["TTL", "rl:a"],
            "value": ["GET", "rl:a"],
            "missing": ["GET", "nope"],
        },
    )
    assert all(r.ok for r in results.values()), {n: r.error for n, r in results.items() if not r.ok}
    memory = results["memory"].value
    assert isinstance(memory["used_memory"], int) and memory["used_memory"] > 0
    assert isinstance(memory["used_memory_human"], str)
    assert isinstance(memory["mem_fragmentation_ratio"], float)
    assert "# Memory" not in memory
    assert results["keyspace"].value["db0"] == {"keys": 3, "expires": 1, "avg_ttl": results["keyspace"].value["db0"]["avg_ttl"]}
    assert results["size"].value == 3
    assert results["ping"].value == "PONG"
    assert results["hash"].value == {"f": "v", "n": "2"}
    assert results["card"].value == 1
    assert 0 < results["ttl"].value <= 100
    assert results["value"].value == "1" and results["missing"].value is None
    assert results["size"].endpoint == redis_url


def test_scan_with_match_and_count(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.mset({**{f"rl:{i}": i for i in range(5)}, "other:1": 1, "other:2": 2})
    client.close()
    result = observe_commands(redis_url, {"scan": ["SCAN", 0, "MATCH", "rl:*", "COUNT", 1000]})["scan"]
    assert result.ok
    assert result.value["cursor"] == 0
    assert sorted(result.value["keys"]) == [f"rl:{i}" for i in range(5)]


def test_memory_usage_is_an_int_or_null(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("big", "x" * 5000)
    client.close()
    results = observe_commands(redis_url, {"big": ["MEMORY", "USAGE", "big"], "none": ["memory", "usage", "absent"]})
    assert isinstance(results["big"].value, int) and results["big"].value >= 5000
    assert results["none"].ok and results["none"].value is None


def test_write_commands_are_refused_before_reaching_redis(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("keep", "me")
    results = observe_commands(redis_url, {"flush": ["FLUSHALL"], "set": ["set", "keep", "gone"]})
    try:
        assert client.get("keep") == b"me"
    finally:
        client.close()
    assert results["flush"].error == "redis command 'FLUSHALL' is not allowed in an observation; observations only run read-only commands"
    assert not results["set"].ok and "'SET' is not allowed" in (results["set"].error or "")


def test_server_side_error_is_reported(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.hset("h", "f", "v")
    client.close()
    result = observe_commands(redis_url, {"wrong": ["GET", "h"]})["wrong"]
    assert not result.ok
    assert (result.error or "").startswith(f"redis error for GET from {redis_url}: WRONGTYPE")


def test_password_from_the_target_token(own_redis: RedisServer) -> None:
    admin = redis.Redis(port=own_redis.port)
    admin.config_set("requirepass", "s3cret")
    admin.close()
    right = observe_commands(own_redis.url, {"ping": ["PING"]}, token="s3cret")["ping"]
    wrong = observe_commands(own_redis.url, {"ping": ["PING"]}, token="guess")["ping"]
    none = observe_commands(own_redis.url, {"ping": ["PING"]})["ping"]
    assert right.ok and right.value == "PONG"
    assert not wrong.ok and (wrong.error or "").startswith(f"redis at {own_redis.url} refused the credentials")
    assert none.error == f"redis at {own_redis.url} requires a password; set `token` on the target (Authentication required.)"


def test_fanout_with_a_dead_redis_and_all_dead(redis_url: str) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    some = observe_commands([redis_url, dead], {"size": ["DBSIZE"]}, mode="fanout")["size"]
    assert some.ok
    assert some.value == [
        {"endpoint": redis_url, "ok": True, "value": 0, "error": None},
        {"endpoint": dead, "ok": False, "value": None, "error": f"connection refused to {dead}"},
    ]
    dead2 = f"redis://127.0.0.1:{free_port()}/0"
    none = observe_commands([dead, dead2], {"size": ["DBSIZE"]}, mode="failover")["size"]
    assert not none.ok and none.error == f"all 2 endpoints failed: connection refused to {dead}; connection refused to {dead2}"


def test_paused_redis_times_out_and_the_client_recovers(own_redis: RedisServer) -> None:
    loaded = make_config(
        {"db": {"url": own_redis.url, "timeout": "300ms"}},
        {"size": {"redis": {"target": "db", "command": ["DBSIZE"]}}},
    )
    admin = redis.Redis(port=own_redis.port)

    async def ticks(observer: Observer) -> list[ObservationResult]:
        first = await observer.observe("size")  # opens the connection
        admin.execute_command("CLIENT", "PAUSE", 800, "ALL")
        stalled = await observer.observe("size")
        admin.ping()  # held by the server until the pause is over (CLIENT UNPAUSE would be held too)
        return [first, stalled, await observer.observe("size")]

    try:
        first, stalled, recovered = run_with(loaded, ticks)
    finally:
        admin.close()
    assert first.ok and recovered.ok and recovered.value == 0
    assert not stalled.ok and (stalled.error or "").startswith("timeout after 300ms")
    assert 0.25 <= stalled.duration_s < 1.5


def test_the_endpoint_dies_between_ticks(own_redis: RedisServer) -> None:
    loaded = make_config({"db": {"url": own_redis.url}}, {"size": {"redis": {"target": "db", "command": ["DBSIZE"]}}})

    async def ticks(observer: Observer) -> list[ObservationResult]:
        alive = await observer.observe("size")
        own_redis.kill()
        return [alive, await observer.observe("size")]

    alive, dead = run_with(loaded, ticks)
    assert alive.ok and not dead.ok
    assert dead.error is not None and "\n" not in dead.error


def test_reply_shapes_of_other_commands() -> None:
    assert reply_value("CLUSTER INFO", b"cluster_state:ok\r\ncluster_slots_assigned:16384\r\n") == {
        "cluster_state": "ok",
        "cluster_slots_assigned": 16384,
    }
    assert reply_value("HSCAN", [b"0", [b"f", b"v"]]) == {"cursor": 0, "items": {"f": "v"}}
    assert reply_value("ZSCAN", [b"7", [b"m", b"1.5"]]) == {"cursor": 7, "items": {"m": 1.5}}
    assert reply_value("CLIENT LIST", b"id=3 addr=127.0.0.1:5 name= db=0\nid=4 addr=x db=1\n") == [
        {"id": 3, "addr": "127.0.0.1:5", "name": "", "db": 0},
        {"id": 4, "addr": "x", "db": 1},
    ]
    assert reply_value("CONFIG GET", [b"maxmemory", b"0"]) == {"maxmemory": "0"}
    assert reply_value("LRANGE", [b"a", b"\xff"]) == ["a", "\\xff"]
