"""Named rate-limit policies, stored in Redis under a monotonically increasing version.

Redis layout (prefix `rl`): `rl:{pol}:data` is a hash name -> policy JSON, `rl:{pol}:version`
an integer. Both share the hash tag `{pol}`, so one Lua script updates them atomically, also on
Redis Cluster. Every node caches the policies and the version it enforces; when Redis has lost
them (restart, flush: version missing or lower than the cache), the next refresh or write puts
the node's cache back first, so the version never goes backwards and no policy silently vanishes.
The built-in `default` policy comes from settings and is always present; a stored `default`
(PUT by an operator) takes its place.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any, Literal

import redis.exceptions
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ratelimiter_service.keys import POLICY_NAME_PATTERN, has_dot_segment

logger = logging.getLogger(__name__)

Algorithm = Literal["sliding_window", "sliding_log", "gcra"]
FailureMode = Literal["open", "closed"]

DEFAULT_POLICY_NAME = "default"
# Bounds keep the scripts' float arithmetic exact (products stay far below 2**53).
MAX_LIMIT = 1_000_000_000
# sliding_window packs two counts in one integer (lua/sliding_window.lua): p * 1e8 + c.
MAX_SLIDING_WINDOW_LIMIT = 49_999_999
MAX_WINDOW_MS = 366 * 24 * 3600 * 1000


_UNIT_MS = {
    "ms": 1, "millisecond": 1, "milliseconds": 1,
    "s": 1000, "sec": 1000, "second": 1000, "seconds": 1000,
    "m": 60_000, "min": 60_000, "minute": 60_000, "minutes": 60_000,
    "h": 3_600_000, "hour": 3_600_000, "hours": 3_600_000,
    "d": 86_400_000, "day": 86_400_000, "days": 86_400_000,
}
_DURATION_PART = re.compile(r"(\d+)\s*([a-z]+)")
_RATE = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(\d*)\s*([a-z]+)\s*$")


def parse_duration_ms(text: str) -> int:
    """`"1m"`, `"90s"`, `"1h30m"`, `"250ms"`, `"2 minutes"` → milliseconds."""
    compact = text.strip().lower()
    parts = _DURATION_PART.findall(compact)
    if not parts or _DURATION_PART.sub("", compact).strip():
        raise ValueError(f"{text!r} is not a duration (e.g. 250ms, 1s, 1m, 1h30m, 1d)")
    total = 0
    for amount, unit in parts:
        if unit not in _UNIT_MS:
            raise ValueError(f"{text!r}: unknown unit {unit!r} (ms, s, m, h, d)")
        total += int(amount) * _UNIT_MS[unit]
    return total


def parse_rate(text: str) -> tuple[int, int]:
    """`"100/minute"`, `"10 per second"`, `"1000/5m"`, `"5/2 hours"` → (limit, window_ms)."""
    match = _RATE.match(text.lower())
    if match is None or match.group(3) not in _UNIT_MS:
        raise ValueError(f"{text!r} is not a rate (e.g. 100/minute, 10 per second, 1000/5m)")
    count, multiple, unit = match.groups()
    return int(count), int(multiple or 1) * _UNIT_MS[unit]


def expand_rate_and_duration(data: Any) -> Any:
    """A policy body may be a rate string, carry `rate`, or give `window_ms` as a duration."""
    if isinstance(data, str):
        data = {"rate": data}
    if not isinstance(data, dict):
        return data
    data = dict(data)
    if "rate" in data:
        if "limit" in data or "window_ms" in data:
            raise ValueError("give either rate or limit and window_ms, not both")
        data["limit"], data["window_ms"] = parse_rate(str(data.pop("rate")))
    if isinstance(data.get("window_ms"), str):
        data["window_ms"] = parse_duration_ms(data["window_ms"])
    return data


class Policy(BaseModel):
    """One named limit: `limit` requests (cost units) per `window_ms`, per key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=f"^{POLICY_NAME_PATTERN}$", description="Policy name, [A-Za-z0-9_.-]{1,64}.")
    limit: int = Field(ge=1, le=MAX_LIMIT, description="Requests (cost units) allowed per window.")
    window_ms: int = Field(ge=1, le=MAX_WINDOW_MS, description="Window length in milliseconds.")
    algorithm: Algorithm = Field(default="sliding_window", description="Counting algorithm.")
    failure_mode: FailureMode = Field(
        default="open", description="What to decide when Redis cannot answer: open admits, closed denies."
    )
    shadow: bool = Field(default=False, description="Decide and count, but always allow (report would-deny).")
    overrides: dict[str, int] = Field(default_factory=dict, description="Per-key limits replacing `limit`.")

    @field_validator("name")
    @classmethod
    def _not_a_dot_segment(cls, name: str) -> str:
        if has_dot_segment(name):
            raise ValueError(f"a policy may not be named {name!r}: it would be a dot segment of a URL path")
        return name

    @field_validator("overrides")
    @classmethod
    def _overrides_in_range(cls, value: dict[str, int]) -> dict[str, int]:
        for key, limit in value.items():
            if not 1 <= limit <= MAX_LIMIT:
                raise ValueError(f"override for key {key!r} must be between 1 and {MAX_LIMIT}, got {limit}")
        return value

    @model_validator(mode="after")
    def _fits_algorithm(self) -> Policy:
        if self.algorithm == "sliding_window":
            biggest = max([self.limit, *self.overrides.values()])
            if biggest > MAX_SLIDING_WINDOW_LIMIT:
                raise ValueError(
                    f"sliding_window counts at most {MAX_SLIDING_WINDOW_LIMIT:,} per window, got a limit "
                    f"of {biggest:,}; use a shorter window or the gcra algorithm"
                )
        return self

    @model_validator(mode="before")
    @classmethod
    def _rates_and_durations(cls, data: Any) -> Any:
        return expand_rate_and_duration(data)

    def limit_for(self, key: str) -> int:
        """The limit that applies to `key`: its override, else the policy's limit."""
        return self.overrides.get(key, self.limit)


# KEYS[1] data hash, KEYS[2] version. ARGV[1] op (sync|put|del), ARGV[2] the caller's cached
# version, ARGV[3] name, ARGV[4] policy JSON, ARGV[5..] the caller's cached name/JSON pairs.
# Returns {version, name1, json1, name2, json2, ...}: one consistent snapshot.
_SYNC_SCRIPT = """
local cached = tonumber(ARGV[2])
local version = tonumber(redis.call('GET', KEYS[2])) or 0
if version < cached then
  redis.call('DEL', KEYS[1])
  for i = 5, #ARGV, 2 do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
  redis.call('SET', KEYS[2], cached)
  version = cached
end
if ARGV[1] == 'put' then
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
  version = redis.call('INCR', KEYS[2])
elseif ARGV[1] == 'del' then
  if redis.call('HDEL', KEYS[1], ARGV[3]) == 1 then
    version = redis.call('INCR', KEYS[2])
  end
end
local reply = {version}
local data = redis.call('HGETALL', KEYS[1])
for i = 1, #data do reply[#reply + 1] = data[i] end
return reply
"""


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class PolicyStore:
    """This node's cache of the policies in Redis, and the only writer of them."""

    def __init__(
        self,
        client: Any,
        *,
        default: Policy,
        prefix: str = "rl",
        on_version: Callable[[int], None] | None = None,
    ) -> None:
        if default.name != DEFAULT_POLICY_NAME:
            raise ValueError(f"the built-in policy must be named {DEFAULT_POLICY_NAME!r}, got {default.name!r}")
        self._client = client
        self._default = default
        self._data_key = f"{prefix}:{{pol}}:data"
        self._version_key = f"{prefix}:{{pol}}:version"
        self._script = client.register_script(_SYNC_SCRIPT)
        self._stored: dict[str, Policy] = {}
        self.version: int = 0
        self.refresh_errors: int = 0
        # Told each version this node takes on: metrics shared by worker processes are written
        # when a value changes, nobody can call back for it at scrape time.
        self._on_version = on_version

    @property
    def keys(self) -> tuple[str, str]:
        """The Redis keys of the store (data hash, version)."""
        return self._data_key, self._version_key

    def get(self, name: str) -> Policy | None:
        if name in self._stored:
            return self._stored[name]
        if name == DEFAULT_POLICY_NAME:
            return self._default
        return None

    def all(self) -> dict[str, Policy]:
        return {DEFAULT_POLICY_NAME: self._default, **self._stored}

    async def refresh(self) -> None:
        """Load newer policies, or re-publish the cache when Redis lost them. Raises redis errors."""
        raw = await self._client.get(self._version_key)
        remote = int(raw) if raw is not None else 0
        if remote == self.version and (raw is not None or self.version == 0):
            return
        await self._sync("sync")

    async def put(self, policy: Policy) -> int:
        """Store `policy` (create or replace); returns the new version."""
        return await self._sync("put", policy.name, policy.model_dump_json())

    async def delete(self, name: str) -> int:
        """Remove a stored policy; returns the version after it (unchanged if there was none)."""
        if name == DEFAULT_POLICY_NAME:
            raise ValueError(f"the {DEFAULT_POLICY_NAME!r} policy is built in and cannot be deleted")
        return await self._sync("del", name, "")

    async def run_refresher(self, interval_s: float = 0.5) -> None:
        """Refresh forever (a background task); a failed refresh is counted and retried."""
        while True:
            try:
                await self.refresh()
            except (redis.exceptions.RedisError, OSError, asyncio.TimeoutError) as exc:
                self.refresh_errors += 1
                logger.warning("policy refresh failed, serving cached version %d: %s", self.version, exc)
            await asyncio.sleep(interval_s)

    async def _sync(self, op: str, name: str = "", payload: str = "") -> int:
        cached: list[str] = []
        for stored_name, policy in self._stored.items():
            cached += [stored_name, policy.model_dump_json()]
        reply = await self._script(
            keys=[self._data_key, self._version_key],
            args=[op, self.version, name, payload, *cached],
        )
        version = int(reply[0])
        self._apply(version, reply[1:])
        return version

    def _apply(self, version: int, flat: list[Any]) -> None:
        if version < self.version:
            # An older snapshot finished after a newer one (concurrent refresh and put).
            return
        stored: dict[str, Policy] = {}
        for raw_name, raw_json in zip(flat[0::2], flat[1::2]):
            name = _text(raw_name)
            try:
                policy = Policy.model_validate_json(_text(raw_json))
            except ValidationError as exc:
                logger.error("skipping invalid stored policy %r: %s", name, exc)
                continue
            if policy.name != name:
                logger.error("skipping stored policy %r: its body names %r", name, policy.name)
                continue
            stored[name] = policy
        self._stored = stored
        self.version = version
        if self._on_version is not None:
            self._on_version(version)

