"""Which Redis commands configs may use: read-only ones for observations, a short list of
writes for actions. Everything else (FLUSHALL, DEBUG, EVAL, SHUTDOWN, KEYS...) is refused."""

from __future__ import annotations

from collections.abc import Sequence

# Commands whose second word is part of the name.
_TWO_WORD = frozenset({"MEMORY", "CLUSTER", "CONFIG", "SLOWLOG", "CLIENT", "LATENCY", "OBJECT", "SCRIPT", "ACL"})

READ_ONLY = frozenset(
    {
        "PING", "INFO", "DBSIZE", "SCAN", "TIME", "TYPE", "EXISTS", "TTL", "PTTL", "STRLEN",
        "GET", "MGET", "HGET", "HMGET", "HGETALL", "HLEN", "HKEYS", "HSCAN",
        "ZCARD", "ZCOUNT", "ZSCORE", "ZRANGE", "ZRANGEBYSCORE", "ZSCAN",
        "SCARD", "SISMEMBER", "SSCAN", "LLEN", "LRANGE", "XLEN",
        "MEMORY USAGE", "MEMORY STATS", "CLUSTER INFO", "CLUSTER NODES", "CLUSTER SHARDS",
        "CONFIG GET", "SLOWLOG GET", "SLOWLOG LEN", "CLIENT LIST", "CLIENT INFO",
        "LATENCY LATEST", "OBJECT ENCODING", "OBJECT IDLETIME", "OBJECT FREQ",
    }
)

WRITE = frozenset(
    {
        "SET", "DEL", "UNLINK", "EXPIRE", "PEXPIRE", "PERSIST",
        "HSET", "HDEL", "HINCRBY", "ZADD", "ZREM", "ZREMRANGEBYSCORE",
        "SADD", "SREM", "INCRBY", "DECRBY", "CONFIG SET", "CLIENT KILL", "CLIENT UNPAUSE",
    }
)


def command_name(command: Sequence[object]) -> str:
    """`["memory", "usage", "k"]` -> `MEMORY USAGE`; `["info", "memory"]` -> `INFO`."""
    if not command:
        return ""
    first = str(command[0]).upper()
    if first in _TWO_WORD and len(command) > 1:
        return f"{first} {str(command[1]).upper()}"
    return first
