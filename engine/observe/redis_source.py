"""`redis` observations: one read-only, allowlisted command per tick.

Replies are decoded here, not by redis-py's per-command callbacks (they are switched off on our
clients), so every command's value has one documented shape:

* INFO, CLUSTER INFO: a flat mapping of field -> value (numbers converted, sections dropped,
  `keys=1,expires=0` lists as mappings);
* SCAN / SSCAN: `{cursor, keys}`; HSCAN / ZSCAN: `{cursor, items: {field: value}}` (ZSCAN
  scores as numbers); one step per tick, the cursor tells whether more remain;
* HGETALL, CONFIG GET, MEMORY STATS: mappings; CLIENT LIST: a list of mappings, CLIENT INFO one;
* MEMORY USAGE: an int, or null for a missing key; everything else: the reply with bytes as text.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aredis
from redis import exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from engine.config.models import RedisQuery, Target
from engine.durations import format_duration
from engine.errors import ObservationError
from engine.observe.values import one_line, pairs_to_mapping, parse_colon_fields, plain, text_of, typed_scalar
from engine.redis_commands import READ_ONLY, command_name


def open_client(endpoint: str, target: Target, timeout: float) -> aredis.Redis:
    """One client per endpoint, reused across ticks; no retries (a tick reports what it saw)."""
    client = aredis.Redis.from_url(
        endpoint,
        password=target.token or None,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=False,
        protocol=2,  # the reply shapes below are RESP2's
    )
    client.response_callbacks.clear()  # raw RESP replies; `reply_value` gives them their shape
    return client


def allowed_command(command: Sequence[str | int]) -> list[str]:
    """The command as strings, or ObservationError when it is not a read-only command."""
    name = command_name(command)
    if name not in READ_ONLY:
        raise ObservationError(
            f"redis command '{name}' is not allowed in an observation; observations only run read-only commands"
        )
    return [str(part) for part in command]


async def fetch(query: RedisQuery, endpoint: str, target: Target, timeout: float, session: aredis.Redis) -> Any:
    args = allowed_command(query.command)
    name = command_name(args)
    try:
        reply = await session.execute_command(*args)
    except rexc.AuthenticationError as exc:
        raise _auth_error(endpoint, target, one_line(str(exc))) from None
    except rexc.TimeoutError:
        raise ObservationError(f"timeout after {format_duration(timeout)} from {endpoint}") from None
    except rexc.ConnectionError as exc:
        text = str(exc)
        if "refused" in text.lower() or f"Error {errno.ECONNREFUSED} " in text or _refused(exc):
            raise ObservationError(f"connection refused to {endpoint}") from None
        raise ObservationError(f"cannot reach redis at {endpoint}: {one_line(text)}") from None
    except rexc.ResponseError as exc:
        text = one_line(str(exc))
        if "without any password configured" in text or text.startswith(("NOAUTH", "WRONGPASS")):
            raise _auth_error(endpoint, target, text) from None
        raise ObservationError(f"redis error for {name} from {endpoint}: {text}") from None
    except rexc.RedisError as exc:
        raise ObservationError(f"redis {name} failed at {endpoint}: {one_line(str(exc)) or type(exc).__name__}") from None
    return reply_value(name, reply)


def _auth_error(endpoint: str, target: Target, detail: str) -> ObservationError:
    if not target.token:
        return ObservationError(f"redis at {endpoint} requires a password; set `token` on the target ({detail})")
    return ObservationError(f"redis at {endpoint} refused the credentials: {detail}")


def _refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def reply_value(name: str, reply: Any) -> Any:
    """A raw RESP2 reply to `name` in the shape documented above."""
    if name in ("INFO", "CLUSTER INFO") and isinstance(reply, (bytes, str)):
        return parse_colon_fields(text_of(reply))
    if name in ("SCAN", "SSCAN", "HSCAN", "ZSCAN") and isinstance(reply, list) and len(reply) == 2:
        cursor = int(text_of(reply[0]))
        if name == "HSCAN":
            return {"cursor": cursor, "items": pairs_to_mapping(reply[1])}
        if name == "ZSCAN":
            return {"cursor": cursor, "items": {k: _score(v) for k, v in pairs_to_mapping(reply[1]).items()}}
        return {"cursor": cursor, "keys": plain(reply[1])}
    if name in ("HGETALL", "CONFIG GET", "MEMORY STATS") and isinstance(reply, list):
        return pairs_to_mapping(reply)
    if name == "CLIENT LIST" and isinstance(reply, (bytes, str)):
        return [_client_fields(line) for line in text_of(reply).splitlines() if line.strip()]
    if name == "CLIENT INFO" and isinstance(reply, (bytes, str)):
        return _client_fields(text_of(reply))
    return plain(reply)


def _score(value: Any) -> Any:
    return typed_scalar(value) if isinstance(value, str) else value


def _client_fields(line: str) -> dict[str, Any]:
    fields = (part.split("=", 1) for part in line.split())
    return {k: typed_scalar(v) for k, v in (f for f in fields if len(f) == 2)}
