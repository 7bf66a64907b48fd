"""The node's Redis client: a hard deadline, retries only of what never reached Redis.

redis-py 8 defaults (5 s timeouts, 10 retries) would let a stalled Redis hold a request for
seconds; a limiter must decide within tens of milliseconds, so both socket timeouts equal the
deadline. redis-py retries a command after a read timeout too, when the script may already
have run: a retried check then counts twice. So redis-py retries nothing, and the limiter
sends a call again (once, `RATELIMITER_REDIS_RETRIES`) only when `error_kind` says it certainly
never reached Redis: the connection could not be made, no pooled connection was free, or the
write failed. After a timeout on a sent call the failure mode applies instead. `within_deadline` additionally bounds every hot-path call as
a whole (a retry after a socket timeout could otherwise double it), telling a stalled Redis from
a node that is merely busy (`RedisProgress`). `warm_up` opens the pool before traffic arrives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar, Union

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ratelimiter_service.settings import CLUSTER_SCHEMES, Settings, SettingsError, parse_cluster_url

logger = logging.getLogger(__name__)

RedisClient = Union[Redis, RedisCluster]
T = TypeVar("T")
# unsent: certainly never reached Redis (retried); timeout: sent, no reply in time (may have
# run); error: the connection broke after sending, or Redis answered an error.
ErrorKind = Literal["unsent", "timeout", "error"]
ERROR_KINDS: tuple[ErrorKind, ...] = ("unsent", "timeout", "error")
# redis-py's messages for failures before a command's bytes left: connect (refused, timed
# out), a pool with no free connection, a failed write.
_UNSENT = ("connecting to", "No connection available", "while writing to socket")


def error_kind(exc: BaseException) -> ErrorKind:
    """What a failed Redis call means for a retry (see the module docstring)."""
    message = str(exc)
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)) and any(m in message for m in _UNSENT):
        return "unsent"
    if isinstance(exc, RedisTimeoutError):
        return "timeout"
    return "error"

GRACE_LOOP_TURNS = 4
RETRY_PAUSE_S = 0.02


class HiredisPacking(AbstractConnection):
    """Commands packed by hiredis: redis-py's asyncio connections pack them in Python (its sync
    ones use hiredis), the largest share of a coalesced decision's CPU in this process. The
    cluster client builds its own connections and still packs in Python."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):
            args = tuple(args[0].encode().split()) + args[1:]
        elif b" " in args[0]:
            args = tuple(args[0].split()) + args[1:]
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:  # an argument of a type redis-py would refuse too
            raise DataError(str(exc)) from exc


_packing_classes: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def hiredis_packing(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """`connection_class` (TCP, TLS or Unix socket, as the URL chose) packing with hiredis."""
    if issubclass(connection_class, HiredisPacking):
        return connection_class
    if connection_class not in _packing_classes:
        _packing_classes[connection_class] = type(
            f"Hiredis{connection_class.__name__}", (HiredisPacking, connection_class), {}
        )
    return _packing_classes[connection_class]


def build_redis_client(settings: Settings) -> RedisClient:
    """A client for `settings.redis_url` (see the settings module for the URL forms)."""
    deadline = settings.deadline_s
    common = dict(
        socket_timeout=deadline,
        socket_connect_timeout=deadline,
        retry=Retry(NoBackoff(), 0),  # see the module docstring: the limiter retries, not redis-py
        health_check_interval=0,
        # No CLIENT SETINFO handshake: less work for every new connection.
        driver_info=None,
    )
    scheme = settings.redis_url.split("://", 1)[0].lower()
    if scheme in CLUSTER_SCHEMES:
        nodes, username, password = parse_cluster_url(settings.redis_url)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            username=username,
            password=password,
            ssl=CLUSTER_SCHEMES[scheme],
            max_connections=settings.redis_max_connections,
            **common,  # type: ignore[arg-type]
        )
    try:
        # A bounded pool: Redis runs one command at a time, so more connections only add
        # handshakes under load. Callers bound the whole call (`within_deadline`), so waiting
        # for a free connection may last as long as a busy node's patience.
        pool = BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            timeout=deadline + settings.busy_patience_s,
            **common,
        )
    except ValueError as exc:
        raise SettingsError(f"RATELIMITER_REDIS_URL: {exc}") from None
    pool.connection_class = hiredis_packing(pool.connection_class)
    return Redis.from_pool(pool)


async def warm_up(client: RedisClient, connections: int) -> int:
    """Open up to `connections` pooled connections now; returns how many are open.

    A cold pool meets a burst with dozens of connects at once, on an event loop too busy to
    finish them within the deadline. Best effort: a Redis that is down leaves the pool cold.
    """
    if not isinstance(client, Redis):
        # The cluster client keeps one pool per master. Discover the masters now: left to the
        # first burst, each command would start redis-py's lazy initialisation, which resets
        # node connections that other commands are using.
        try:
            await client.initialize()
        except (RedisError, OSError):
            pass
        return 0
    pool = client.connection_pool

    async def acquire() -> Any:
        try:
            return await pool.get_connection()
        except (RedisError, OSError):
            return None

    held = [c for c in await asyncio.gather(*(acquire() for _ in range(connections))) if c is not None]
    for connection in held:
        await pool.release(connection)
    return len(held)


class RedisProgress:
    """When this process last got a successful Redis reply (event-loop time).

    It tells a stalled Redis from a busy node: when a call's deadline passes while other calls
    keep getting replies, the delay is this process's backlog (a burst of requests queued on the
    event loop), not Redis. Failing open then would let a burst bypass the limits.
    """

    def __init__(self) -> None:
        self.last_reply = float("-inf")

    def observe(self, task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is None:
            self.last_reply = asyncio.get_running_loop().time()


def keeps_waiting(*, now: float, started: float, last_reply: float, deadline_s: float, patience_s: float) -> bool:
    """Whether a call past a deadline waits one more: only while Redis answered another call
    within the last deadline (the node is busy, Redis is not), and never past `patience_s`."""
    return now - last_reply < deadline_s and now - started + deadline_s <= patience_s


async def within_deadline(
    call: Awaitable[T], deadline_s: float, *, progress: RedisProgress | None = None, patience_s: float = 0.0
) -> T:
    """Await `call` in its own task, raising redis' TimeoutError after `deadline_s`.

    With `progress`, a call past its deadline keeps waiting (up to `patience_s` in all) as long
    as Redis answered some call within the last `deadline_s`; a stalled or dead Redis still
    fails within about two deadlines.

    A separate task (rather than `asyncio.timeout`) because on Python 3.11 redis-py's reads go
    through `asyncio.wait_for`, which returns a result instead of raising when a cancellation
    arrives just as the reply does: the cancellation is lost, so a timeout or a shutdown that
    cancels the caller could be ignored. Here the caller never waits inside redis-py.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.ensure_future(call)
    if progress is not None:
        task.add_done_callback(progress.observe)
    try:
        while True:
            await asyncio.wait((task,), timeout=deadline_s)
            # A busy loop runs expired timers in the same turn as the socket read that carries
            # the reply: let an answer that has already arrived be parsed before giving up.
            for _ in range(GRACE_LOOP_TURNS):
                if task.done():
                    break
                await asyncio.sleep(0)
            if task.done() or progress is None:
                break
            if not keeps_waiting(
                now=loop.time(), started=started, last_reply=progress.last_reply,
                deadline_s=deadline_s, patience_s=patience_s,
            ):
                break
    except BaseException:
        _abandon(task)
        raise
    if task.done():
        try:
            return task.result()
        except (OSError, RuntimeError) as exc:
            # The transport under redis-py can fail outside its own exceptions: uvloop raises
            # RuntimeError ("the handler is closed") when Redis dies while a reconnect writes.
            # That is Redis being unreachable, not a bug of the caller: the failure mode applies.
            logger.warning("Redis call failed in its transport: %r", exc)
            raise RedisConnectionError(f"Redis connection failed: {exc}") from exc
    # Not cancelled: a command cut off mid-reply costs its connection, and reconnecting under
    # load makes the next deadline harder to meet. The socket timeout ends it soon anyway.
    task.add_done_callback(_retrieve)
    raise RedisTimeoutError(f"Redis did not answer within {deadline_s * 1000:.0f} ms")


async def repeating_within(
    make_call: Callable[[], Awaitable[T]], timeout_s: float, *, progress: RedisProgress | None = None
) -> T:
    """A management call (policies, keys, registry), sent again after an unsent or timed-out
    attempt while `timeout_s` lasts: redis-py retries nothing (see the module docstring), and a
    socket timeout is the 50 ms decision deadline. Only for calls whose repetition is harmless
    (a policy write repeated bumps the version twice; a reset or a listing is idempotent)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while True:
        try:
            return await within_deadline(make_call(), max(end - loop.time(), 0.001), progress=progress)
        except RedisError as exc:
            left = end - loop.time()
            if error_kind(exc) == "error" or left <= 0:
                raise
            await asyncio.sleep(min(RETRY_PAUSE_S, left))


def _abandon(task: asyncio.Future[Any]) -> None:
    task.cancel()
    task.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark an abandoned call's outcome as seen (no "exception was never retrieved" noise)."""
    if not task.cancelled():
        task.exception()
