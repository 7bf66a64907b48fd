"""Rate-limit decisions: one Lua script call per decision, one pipeline per batch.

`CoalescingLimiter` wraps a `Limiter` for a server: single checks that arrive together (in the
same event-loop turn, or while earlier pipelines are in flight) share one pipeline round trip.

Time comes from the Redis server (`TIME` inside the scripts), so nodes with skewed clocks decide
identically. Only a limiter built with `test_mode=True` honours an injected `now_ms`; keys written
with injected time get a long minimum TTL, because their deadlines are not in Redis time.
Redis errors are raised to the caller (the service applies the policy's failure mode);
a caller's mistake (cost < 1, an exact log above `max_log_limit`, an unencodable key) is a
`ValueError` with a sentence naming it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from ratelimiter_service import keys as keynames
from ratelimiter_service.policies import Policy
from ratelimiter_service.redis_client import error_kind

T = TypeVar("T")

# Keys written under injected (test) time outlive any test; their real deadline is unknowable.
INJECTED_TIME_MIN_TTL_MS = 3_600_000
_PEEK_CHUNK = 500
DEFAULT_INDEX_MAX = 10_000
MAX_LIMITS = 16  # limits of one multi-limit check


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_after_ms: int
    retry_after_ms: int


@dataclass(frozen=True)
class MultiDecision:
    """The decision of a multi-limit check: `allowed` only if every enforced limit admitted
    (then all were charged); `decisions` in the order of the limits, each saying whether that
    limit admits (charged only when `allowed`)."""

    allowed: bool
    decisions: tuple[Decision, ...]


@dataclass(frozen=True)
class KeyUsage:
    policy: str
    key: str
    used: int
    limit: int
    remaining: int
    reset_after_ms: int


@dataclass(frozen=True)
class _Call:
    """One prepared script call."""

    algorithm: str
    key_name: str
    args: tuple[str | int, ...]


def load_script_source(algorithm: str) -> str:
    """The Lua source of a script shipped as package data (`lua/<name>.lua`)."""
    return (Path(__file__).parent / "lua" / f"{algorithm}.lua").read_text("utf-8")


def _index_prelude(index_max: int) -> str:
    return f"local OVER_LIMIT_INDEX_MAX = {int(index_max)}\n" + load_script_source("over_limit_index")


def decision_script_source(algorithm: str, index_max: int = DEFAULT_INDEX_MAX) -> str:
    """An algorithm's script as the limiter runs it: its decision, then, when KEYS[2] (the
    over-limit index) is given and the decision leaves nothing remaining, the key is indexed.
    The index code is defined inside that branch: a script's local functions are made anew
    at every run, and most decisions leave some quota."""
    return (
        "local function decide()\n"
        + load_script_source(algorithm)
        + "\nend\nlocal reply = decide()\n"
        + "if reply[3] == 0 and KEYS[2] and tonumber(ARGV[3]) > 0 then\n"
        + _index_prelude(index_max)
        + "\nindex_over_limit(KEYS[2], KEYS[1], reply[4])\nend\nreturn reply\n"
    )


def multi_script_source(index_max: int = DEFAULT_INDEX_MAX) -> str:
    """The multi-limit script: every algorithm's body as a function, then lua/multi.lua."""
    bodies = "".join(
        f"local function alg_{code}(KEYS, ARGV)\n{load_script_source(algorithm)}\nend\n"
        for algorithm, code in keynames.ALGORITHM_CODES.items()
    )
    return _index_prelude(index_max) + bodies + load_script_source("multi")


def index_script_source(index_max: int = DEFAULT_INDEX_MAX) -> str:
    """The index update alone (Redis Cluster: the index is in another slot than the key)."""
    return _index_prelude(index_max) + "index_over_limit(KEYS[1], ARGV[1], tonumber(ARGV[2]))\nreturn 1\n"


class Limiter:
    """Decides, peeks, resets and lists limiter keys of one Redis (single node or cluster)."""

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "rl",
        test_mode: bool = False,
        max_log_limit: int = 1000,
        over_limit_index_max: int = DEFAULT_INDEX_MAX,
        retries: int = 1,
        on_script_reload: Callable[[], None] | None = None,
        on_index_error: Callable[[BaseException], None] | None = None,
        on_retry: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._client = client
        self._retries = retries
        self._on_retry = on_retry
        self._prefix = prefix
        self._test_mode = test_mode
        self._max_log_limit = max_log_limit
        self._on_script_reload = on_script_reload
        self._on_index_error = on_index_error
        self._index_key = keynames.over_limit_index_key(prefix)
        # On Redis Cluster the index is in another slot than the limiter keys: the decision
        # script cannot write it, so the limiter does, right after (see _index_in_cluster).
        self._cluster = isinstance(client, RedisCluster)
        self._scripts = {
            algorithm: client.register_script(decision_script_source(algorithm, over_limit_index_max))
            for algorithm in keynames.ALGORITHM_CODES
        }
        self._index_script = client.register_script(index_script_source(over_limit_index_max))
        self._multi_script = client.register_script(multi_script_source(over_limit_index_max))

    # -- decisions ---------------------------------------------------------------------------

    async def check(self, policy: Policy, key: str, cost: int = 1, *, now_ms: int | None = None) -> Decision:
        call = self._prepare(policy, key, cost, now_ms)
        return _decision(await self._run(call))

    async def check_batch(self, checks: Sequence[tuple[Policy, str, int]]) -> list[Decision | Exception]:
        """Decide every check in one pipeline round trip; results in order.

        A check the caller got wrong holds its `ValueError`; when the round trip itself fails,
        every slot holds that Redis error, so the caller can apply each policy's failure mode.
        """
        prepared: list[_Call | Exception] = []
        for policy, key, cost in checks:
            try:
                prepared.append(self._prepare(policy, key, cost, None))
            except ValueError as exc:
                prepared.append(exc)
        replies = await self._run_many(prepared)
        return [reply if isinstance(reply, Exception) else _decision(reply) for reply in replies]

    async def check_all(
        self, limits: Sequence[tuple[Policy, str, int]], *, now_ms: int | None = None
    ) -> MultiDecision:
        """Decide several limits in one script run: all admit and are charged, or none is.

        Every key must hash to one cluster slot (`keys.caller_tag`: one caller key, or keys that
        share a `{tag}`) and no (policy, key) may appear twice; a shadow policy never denies
        the others. A caller's mistake is a `ValueError`.
        """
        if not 1 <= len(limits) <= MAX_LIMITS:
            raise ValueError(f"a multi-limit check has 1 to {MAX_LIMITS} limits, got {len(limits)}")
        calls = [self._prepare(policy, key, cost, now_ms) for policy, key, cost in limits]
        names = [call.key_name for call in calls]
        if len(set(names)) != len(names):
            raise ValueError("a multi-limit check names one policy and key twice")
        tags = {keynames.hash_tag(name) for name in names}
        if len(tags) > 1:
            raise ValueError(
                "the keys of a multi-limit check must share a hash tag (one key, or keys with one "
                f"{{tag}}): these would span {len(tags)} cluster slots"
            )
        args: list[str | int] = [len(calls)]
        for call, (policy, _key, _cost) in zip(calls, limits):
            nonce = call.args[3] if call.algorithm == "sliding_log" else ""
            args += [keynames.ALGORITHM_CODES[call.algorithm], call.args[0], call.args[1], call.args[2], nonce,
                     0 if policy.shadow else 1]
        args += list(self._time_args(now_ms))
        keys = names if self._cluster else [*names, self._index_key]
        script = self._multi_script

        async def send() -> list[int]:
            return await self._client.evalsha(script.sha, len(keys), *keys, *args)  # type: ignore[no-any-return]

        try:
            reply = await self._unless_unsent(send)
        except redis.exceptions.NoScriptError:
            await self._client.script_load(script.script)
            if self._on_script_reload is not None:
                self._on_script_reload()
            reply = await self._unless_unsent(send)
        decisions = tuple(_decision(reply[1 + 6 * i : 7 + 6 * i]) for i in range(len(calls)))
        if self._cluster and reply[0]:
            await self._index_in_cluster([(call, list(reply[1 + 6 * i : 7 + 6 * i])) for i, call in enumerate(calls)])
        return MultiDecision(allowed=bool(reply[0]), decisions=decisions)

    async def usage(self, policy: Policy, key: str, *, now_ms: int | None = None) -> KeyUsage:
        """What `key` has used of `policy` right now; writes nothing."""
        reply = await self._run(self._prepare_peek(policy, key, now_ms))
        return _usage(policy.name, key, reply)

    async def reset(self, policy: Policy, key: str) -> bool:
        """Forget the state of `key` under `policy` (every algorithm's key); True if any existed."""
        names = self._key_names(policy.name, key)
        deleted = await self._client.delete(*names)
        await self._client.zrem(self._index_key, *names)
        return int(deleted) > 0

    async def active_keys(
        self,
        policies: Mapping[str, Policy],
        *,
        over_limit: bool = False,
        limit: int = 1000,
        now_ms: int | None = None,
    ) -> list[KeyUsage]:
        """Keys with usage > 0 (or with nothing left, if `over_limit`), sorted by policy and key.

        All active keys come from a SCAN of the keyspace; over-limit keys from the over-limit
        index alone (bounded, kept by the scripts), never a SCAN, so a flood of keys cannot make
        this slow. Keys of unknown policies, or left over from a policy's previous algorithm,
        are skipped; every candidate is peeked, so what is listed is its usage now.
        """
        names = self._indexed_names() if over_limit else self._scanned_names()
        found: list[KeyUsage] = []
        pending: list[tuple[Policy, str]] = []

        async def flush() -> None:
            calls: list[_Call | Exception] = [self._prepare_peek(p, k, now_ms) for p, k in pending]
            for (policy, key), reply in zip(pending, await self._run_many(calls)):
                if isinstance(reply, Exception):
                    raise reply
                usage = _usage(policy.name, key, reply)
                if usage.used > 0 and (not over_limit or usage.remaining == 0):
                    found.append(usage)
            pending.clear()

        seen: set[str] = set()
        async for raw in names:
            parsed = keynames.parse_limiter_key(self._prefix, raw)
            if parsed is None:
                continue
            policy = policies.get(parsed.policy)
            if policy is None or policy.algorithm != parsed.algorithm:
                continue
            name = raw.decode("ascii") if isinstance(raw, bytes) else raw
            if name in seen:  # SCAN may return a key twice
                continue
            seen.add(name)
            pending.append((policy, parsed.key))
            if len(pending) >= _PEEK_CHUNK:
                await flush()
                if len(found) >= limit:
                    break
        if pending and len(found) < limit:
            await flush()
        found.sort(key=lambda usage: (usage.policy, usage.key))
        return found[:limit]

    async def over_limit_index(self) -> list[str]:
        """The limiter key names in the over-limit index, latest reset first (at most its bound)."""
        raw = await self._client.zrange(self._index_key, 0, -1, desc=True)
        return [name.decode("ascii", "replace") if isinstance(name, bytes) else str(name) for name in raw]

    async def _indexed_names(self) -> AsyncIterator[Any]:
        """The index, latest reset first, a page at a time: a listing that has found enough
        keys reads no further."""
        start = 0
        while True:
            page = await self._client.zrange(self._index_key, start, start + _PEEK_CHUNK - 1, desc=True)
            for name in page:
                yield name
            if len(page) < _PEEK_CHUNK:
                return
            start += _PEEK_CHUNK

    def _scanned_names(self) -> AsyncIterator[Any]:
        return self._client.scan_iter(match=keynames.limiter_scan_pattern(self._prefix), count=1000)  # type: ignore[no-any-return]

    # -- preparing calls -----------------------------------------------------------------------

    def _key_names(self, policy: str, key: str) -> list[str]:
        try:
            return keynames.limiter_keys_for_pair(self._prefix, policy, key)
        except UnicodeEncodeError:
            raise ValueError("the key is not valid UTF-8 text (it contains a lone surrogate)") from None

    def _key_name(self, policy: Policy, key: str) -> str:
        if not isinstance(key, str):
            raise ValueError(f"the key must be a string, got {type(key).__name__}")
        try:
            return keynames.limiter_key(self._prefix, policy.name, key, policy.algorithm)
        except UnicodeEncodeError:
            raise ValueError("the key is not valid UTF-8 text (it contains a lone surrogate)") from None

    def _time_args(self, now_ms: int | None) -> tuple[int, ...]:
        """The scripts' trailing time arguments: none in production, where they read TIME."""
        if now_ms is not None and self._test_mode:
            return int(now_ms), INJECTED_TIME_MIN_TTL_MS
        return ()

    def _limit(self, policy: Policy, key: str) -> int:
        limit = policy.limit_for(key)
        if policy.algorithm == "sliding_log" and limit > self._max_log_limit:
            raise ValueError(
                f"policy {policy.name!r} uses sliding_log with a limit of {limit}, above the maximum "
                f"of {self._max_log_limit} for an exact log (its memory grows with the limit); "
                "use sliding_window or gcra"
            )
        return limit

    def _prepare(self, policy: Policy, key: str, cost: int, now_ms: int | None) -> _Call:
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise ValueError(f"cost must be an integer >= 1, got {cost!r}")
        name = self._key_name(policy, key)
        limit = self._limit(policy, key)
        args: tuple[str | int, ...] = (limit, policy.window_ms, cost)
        if policy.algorithm == "sliding_log":
            args += (os.urandom(4).hex(),)
        return _Call(policy.algorithm, name, args + self._time_args(now_ms))

    def _prepare_peek(self, policy: Policy, key: str, now_ms: int | None) -> _Call:
        name = self._key_name(policy, key)
        # The peek never refuses: usage of a key must be readable whatever its policy says now.
        args: tuple[str | int, ...] = (policy.limit_for(key), policy.window_ms, 0)
        if policy.algorithm == "sliding_log":
            args += ("",)
        return _Call(policy.algorithm, name, args + self._time_args(now_ms))

    # -- running calls -------------------------------------------------------------------------

    async def _reload(self, algorithms: set[str]) -> None:
        """Put scripts back after NOSCRIPT (Redis restarted or flushed its script cache)."""
        for algorithm in sorted(algorithms):
            await self._client.script_load(self._scripts[algorithm].script)
            if self._on_script_reload is not None:
                self._on_script_reload()

    def _keys_of(self, call: _Call) -> tuple[str, ...]:
        """A call's KEYS: the limiter key, and the over-limit index where one script may write both."""
        return (call.key_name,) if self._cluster else (call.key_name, self._index_key)

    async def _run(self, call: _Call) -> list[int]:
        sha = self._scripts[call.algorithm].sha
        keys = self._keys_of(call)

        async def send() -> list[int]:
            return await self._client.evalsha(sha, len(keys), *keys, *call.args)  # type: ignore[no-any-return]

        try:
            reply = await self._unless_unsent(send)
        except redis.exceptions.NoScriptError:
            await self._reload({call.algorithm})
            reply = await self._unless_unsent(send)
        reply = _expanded(reply, call)
        if self._cluster:
            await self._index_in_cluster([(call, reply)])
        return reply

    async def _unless_unsent(self, send: Callable[[], Awaitable[T]]) -> T:
        """`send()`, sent again (up to `retries` times) only after a failure that certainly
        never reached Redis: a script that may have run is never run twice."""
        for attempt in range(self._retries + 1):
            try:
                return await send()
            except redis.exceptions.RedisError as exc:
                if attempt == self._retries or error_kind(exc) != "unsent":
                    raise
                if self._on_retry is not None:
                    self._on_retry(exc)
        raise AssertionError("unreachable")

    async def _index_in_cluster(self, done: Sequence[tuple[_Call, list[int] | Exception]]) -> None:
        """Index the keys these calls left with nothing remaining (one pipeline, only when
        there are some), so that a listing made after a decision sees it, as on a single
        Redis. The decision stands if this fails (an `over_limit_index` Redis error)."""
        used_up = [
            (call.key_name, reply[3])
            for call, reply in done
            if not isinstance(reply, Exception) and int(call.args[2]) > 0 and int(reply[2]) == 0
        ]
        if not used_up:
            return

        async def send() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for name, reset_after_ms in used_up:
                pipe.execute_command("EVALSHA", self._index_script.sha, 1, self._index_key, name, reset_after_ms)
            return await pipe.execute(raise_on_error=False)  # type: ignore[no-any-return]

        try:
            replies = await send()
            if any(isinstance(reply, redis.exceptions.NoScriptError) for reply in replies):
                await self._client.script_load(self._index_script.script)
                replies = await send()
            failed = next((reply for reply in replies if isinstance(reply, Exception)), None)
            if failed is not None:
                raise failed
        except redis.exceptions.RedisError as exc:
            if self._on_index_error is not None:
                self._on_index_error(exc)

    async def aclose(self) -> None:
        """Nothing to wait for: every call of a limiter ends with its caller."""

    async def _run_many(self, calls: Sequence[_Call | Exception]) -> list[list[int] | Exception]:
        results: list[list[int] | Exception] = [c if isinstance(c, Exception) else [] for c in calls]
        todo = [i for i, c in enumerate(calls) if isinstance(c, _Call)]
        # A NOSCRIPT reply means the script did not run, so those calls (only) are sent again.
        for attempt in range(2):
            if not todo:
                break
            sending = [calls[i] for i in todo]

            async def send() -> list[Any]:
                # A new pipeline per attempt: redis-py empties one when its execute fails.
                pipe = self._client.pipeline(transaction=False)
                for call in sending:
                    assert isinstance(call, _Call)
                    # execute_command, not pipe.evalsha: redis-py blocks the method (only) on a
                    # cluster pipeline, while the command itself routes by the key's slot.
                    keys = self._keys_of(call)
                    pipe.execute_command("EVALSHA", self._scripts[call.algorithm].sha, len(keys), *keys, *call.args)
                return await pipe.execute(raise_on_error=False)  # type: ignore[no-any-return]

            try:
                replies = await self._unless_unsent(send)
            except redis.exceptions.RedisError as exc:
                for i in todo:
                    results[i] = exc
                break
            missing: set[str] = set()
            again: list[int] = []
            for i, reply in zip(todo, replies):
                call = calls[i]
                assert isinstance(call, _Call)
                results[i] = _expanded(reply, call)
                if isinstance(reply, redis.exceptions.NoScriptError) and attempt == 0:
                    missing.add(call.algorithm)
                    again.append(i)
            if missing:
                try:
                    await self._reload(missing)
                except redis.exceptions.RedisError as exc:
                    for i in again:
                        results[i] = exc
                    break
            todo = again
        if self._cluster:
            await self._index_in_cluster(
                [(call, reply) for call, reply in zip(calls, results) if isinstance(call, _Call)]
            )
        return results


class CoalescingLimiter:
    """A `Limiter` whose concurrent single checks share pipelines; otherwise the same interface.

    A check is queued and the queue is flushed on the next event-loop turn, as one pipeline of
    at most `max_batch` calls; while `max_in_flight` pipelines are out, the queue grows instead,
    so batches get larger exactly when the node is busy, and a lone check waits for no timer.
    Every guarantee of `Limiter.check` holds per call: a caller's mistake raises `ValueError`
    at once (nothing is queued); each call gets its own reply or Redis error (NOSCRIPT reloads
    included, see `Limiter._run_many`); each decision is still one atomic script run; a call
    cancelled before its pipeline is sent is never sent. The caller bounds the wait (the
    service's `within_deadline`): queueing counts against its deadline.
    """

    def __init__(self, limiter: Limiter, *, max_batch: int = 32, max_in_flight: int = 4) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be >= 1")
        self.limiter = limiter
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: list[tuple[_Call, asyncio.Future[Decision]]] = []
        self._in_flight = 0
        self._flush_scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    def check(
        self, policy: Policy, key: str, cost: int = 1, *, now_ms: int | None = None
    ) -> asyncio.Future[Decision]:
        """Like `Limiter.check`; returns the awaitable decision (a future, not a new task)."""
        call = self.limiter._prepare(policy, key, cost, now_ms)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Decision] = loop.create_future()
        self._queue.append((call, future))
        if not self._flush_scheduled and self._in_flight < self._max_in_flight:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    async def check_batch(self, checks: Sequence[tuple[Policy, str, int]]) -> list[Decision | Exception]:
        return await self.limiter.check_batch(checks)

    async def check_all(
        self, limits: Sequence[tuple[Policy, str, int]], *, now_ms: int | None = None
    ) -> MultiDecision:
        return await self.limiter.check_all(limits, now_ms=now_ms)

    async def usage(self, policy: Policy, key: str, *, now_ms: int | None = None) -> KeyUsage:
        return await self.limiter.usage(policy, key, now_ms=now_ms)

    async def reset(self, policy: Policy, key: str) -> bool:
        return await self.limiter.reset(policy, key)

    async def active_keys(
        self,
        policies: Mapping[str, Policy],
        *,
        over_limit: bool = False,
        limit: int = 1000,
        now_ms: int | None = None,
    ) -> list[KeyUsage]:
        return await self.limiter.active_keys(policies, over_limit=over_limit, limit=limit, now_ms=now_ms)

    async def over_limit_index(self) -> list[str]:
        return await self.limiter.over_limit_index()

    async def aclose(self) -> None:
        """Wait for the pipelines already sent (their callers may have given up)."""
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        await self.limiter.aclose()

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._queue and self._in_flight < self._max_in_flight:
            batch = [(call, future) for call, future in self._queue[: self._max_batch] if not future.done()]
            del self._queue[: self._max_batch]
            if not batch:
                continue
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[_Call, asyncio.Future[Decision]]]) -> None:
        replies: Sequence[list[int] | Exception]
        try:
            replies = await self.limiter._run_many([call for call, _ in batch])
        except Exception as exc:  # not a Redis error (those are per call): every call fails with it
            replies = [exc] * len(batch)
        except asyncio.CancelledError:
            # Only a loop shutting down cancels a send; its callers must not be cancelled with it.
            lost = redis.exceptions.ConnectionError("the pipeline was cancelled (shutting down)")
            self._settle(batch, [lost] * len(batch))
            raise
        finally:
            self._in_flight -= 1
            if self._queue and not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
        self._settle(batch, replies)

    @staticmethod
    def _settle(
        batch: list[tuple[_Call, asyncio.Future[Decision]]], replies: Sequence[list[int] | Exception]
    ) -> None:
        for (_, future), reply in zip(batch, replies):
            if future.done():  # the caller gave up meanwhile
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(_decision(reply))


def _expanded(reply: Any, call: _Call) -> Any:
    """A decision script's reply in its full form: a short admit, {remaining, reset_after_ms}
    (lua/sliding_window.lua), is {1, limit, remaining, reset_after_ms, 0, limit - remaining}."""
    if isinstance(reply, list) and len(reply) == 2:
        limit = int(call.args[0])
        return [1, limit, reply[0], reply[1], 0, limit - int(reply[0])]
    return reply


def _decision(reply: list[int]) -> Decision:
    return Decision(
        allowed=bool(reply[0]),
        limit=int(reply[1]),
        remaining=int(reply[2]),
        reset_after_ms=int(reply[3]),
        retry_after_ms=int(reply[4]),
    )


def _usage(policy: str, key: str, reply: list[int]) -> KeyUsage:
    return KeyUsage(
        policy=policy,
        key=key,
        used=int(reply[5]),
        limit=int(reply[1]),
        remaining=int(reply[2]),
        reset_after_ms=int(reply[3]),
    )
