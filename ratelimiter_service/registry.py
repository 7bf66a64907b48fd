"""Node registry: heartbeats in Redis, node states computed from Redis time.

Layout: one hash `<prefix>:{reg}:nodes`, field = node id, value = JSON record
`{id, address, instance, started_at, last_heartbeat, policy_version, decisions,
failure_mode_decisions}` (times in unix ms of the Redis clock). One key keeps every registry
operation a single-slot script in Redis Cluster, and its name never matches the limiter's
SCAN pattern (`<prefix>:lim:{*`).

- Every heartbeat stamps `last_heartbeat` with Redis `TIME` inside the script, and `/v1/nodes`
  compares it with Redis `TIME` too, so skewed node clocks cannot make a node look fresh or dead.
- The hash keeps a long TTL (`registry_ttl_s`, default 24 h) refreshed by every heartbeat: a
  killed node turns `stale`, then `down`, and stays listed as `down` until an operator removes
  it (`DELETE /v1/nodes/{id}`); it never silently vanishes while any node is alive.
- A node removed while it is alive re-registers on its next heartbeat (with counters restarted).
- All worker processes of one node share its id and `instance` (a per-start id set by
  `python -m ratelimiter_service`): heartbeats carry counter *deltas*, which the script adds to
  the record, so `decisions` is the node's total over its workers since it started. A record
  written by another instance (the node restarted) starts over with a new `started_at`.
  A heartbeat whose reply is lost after Redis applied it is sent again with the same deltas,
  so counters are at-least-once (they may over-count by one heartbeat's worth, never lose).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from redis.exceptions import RedisError

from ratelimiter_service.redis_client import RedisClient, repeating_within, within_deadline

NodeState = Literal["up", "stale", "down"]

HEARTBEAT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local report = cjson.decode(ARGV[2])
local ttl_ms = tonumber(ARGV[3])
local record = {decisions = 0, failure_mode_decisions = 0, started_at = now}
local old = redis.call('HGET', KEYS[1], id)
if old then
  local previous = cjson.decode(old)
  if previous.instance == report.instance then
    record = previous
  end
end
record.id = id
record.instance = report.instance
record.address = report.address
record.policy_version = tonumber(report.policy_version)
record.decisions = tonumber(record.decisions) + tonumber(report.decisions_delta)
record.failure_mode_decisions = tonumber(record.failure_mode_decisions)
  + tonumber(report.failure_mode_decisions_delta)
record.last_heartbeat = now
redis.call('HSET', KEYS[1], id, cjson.encode(record))
redis.call('PEXPIRE', KEYS[1], ttl_ms)
return now
"""

LIST_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {now, redis.call('HGETALL', KEYS[1])}
"""


@dataclass(frozen=True)
class HeartbeatReport:
    """What one worker says about itself; counters are increments since its last heartbeat."""

    node_id: str
    instance: str
    address: str
    policy_version: int
    decisions_delta: int
    failure_mode_decisions_delta: int


@dataclass(frozen=True)
class NodeStatus:
    id: str
    address: str
    state: NodeState
    policy_version: int
    started_at: int
    last_heartbeat: int
    heartbeat_age_ms: int
    decisions: int
    failure_mode_decisions: int


def node_state(age_ms: int, *, stale_after_ms: int, down_after_ms: int) -> NodeState:
    """`up` until `stale_after_ms` without a heartbeat, `stale` until `down_after_ms`, then `down`."""
    if age_ms < stale_after_ms:
        return "up"
    if age_ms < down_after_ms:
        return "stale"
    return "down"


def registry_key(prefix: str) -> str:
    return f"{prefix}:{{reg}}:nodes"


class NodeRegistry:
    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str,
        stale_after_ms: int,
        down_after_ms: int,
        ttl_s: int,
        timeout_s: float,
    ) -> None:
        self._key = registry_key(prefix)
        self._client = client
        self._stale_after_ms = stale_after_ms
        self._down_after_ms = down_after_ms
        self._ttl_ms = ttl_s * 1000
        self._timeout_s = timeout_s
        self._heartbeat = client.register_script(HEARTBEAT_SCRIPT)
        self._list = client.register_script(LIST_SCRIPT)

    async def heartbeat(self, report: HeartbeatReport, *, timeout_s: float) -> int:
        """Write the report; returns the Redis time (unix ms) it was stamped with."""
        body = json.dumps(
            {
                "instance": report.instance,
                "address": report.address,
                "policy_version": report.policy_version,
                "decisions_delta": report.decisions_delta,
                "failure_mode_decisions_delta": report.failure_mode_decisions_delta,
            }
        )
        now = await within_deadline(
            self._heartbeat(keys=[self._key], args=[report.node_id, body, self._ttl_ms]), timeout_s
        )
        return int(now)

    async def nodes(self) -> list[NodeStatus]:
        now, flat = await repeating_within(lambda: self._list(keys=[self._key]), self._timeout_s)
        now = int(now)
        statuses = []
        for raw in flat[1::2]:
            record = json.loads(raw)
            age = max(0, now - int(record["last_heartbeat"]))
            statuses.append(
                NodeStatus(
                    id=str(record["id"]),
                    address=str(record.get("address", "")),
                    state=node_state(age, stale_after_ms=self._stale_after_ms, down_after_ms=self._down_after_ms),
                    policy_version=int(record.get("policy_version", 0)),
                    started_at=int(record["started_at"]),
                    last_heartbeat=int(record["last_heartbeat"]),
                    heartbeat_age_ms=age,
                    decisions=int(record.get("decisions", 0)),
                    failure_mode_decisions=int(record.get("failure_mode_decisions", 0)),
                )
            )
        return sorted(statuses, key=lambda s: s.id)

    async def remove(self, node_id: str) -> bool:
        removed = await repeating_within(lambda: self._client.hdel(self._key, node_id), self._timeout_s)
        return bool(removed)


@dataclass
class NodeCounters:
    """This worker's decision counters and what it has already reported."""

    decisions: int = 0
    failure_mode_decisions: int = 0
    reported_decisions: int = 0
    reported_failure_mode_decisions: int = 0


async def run_heartbeats(
    registry: NodeRegistry,
    *,
    counters: NodeCounters,
    identity: Callable[[], tuple[str, str, str, int]],
    interval_s: float,
    on_success: Callable[[], None],
    on_error: Callable[[BaseException], None],
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> None:
    """Heartbeat forever; a failed heartbeat keeps its deltas for the next one."""
    while True:
        node_id, instance, address, policy_version = identity()
        decisions = counters.decisions
        failures = counters.failure_mode_decisions
        report = HeartbeatReport(
            node_id=node_id,
            instance=instance,
            address=address,
            policy_version=policy_version,
            decisions_delta=decisions - counters.reported_decisions,
            failure_mode_decisions_delta=failures - counters.reported_failure_mode_decisions,
        )
        try:
            await registry.heartbeat(report, timeout_s=max(interval_s, 0.05))
        except (RedisError, OSError) as exc:
            on_error(exc)
        else:
            counters.reported_decisions = decisions
            counters.reported_failure_mode_decisions = failures
            on_success()
        await sleep(interval_s)
