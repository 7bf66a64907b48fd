"""Which Redis commands configs may use: read-only ones for observations, a closed vocabulary of
writes for actions. Everything else (FLUSHALL, DEBUG, EVAL, SHUTDOWN, KEYS, SAVE...) is refused.

An action's write is typed, not just named: `CONFIG SET` may change only the tuning parameters
in CONFIG_SET_ALLOWED (never `dir`, `dbfilename`, `requirepass`... which turn Redis into a file
writer or lock every client out), and a command that writes keys may write only keys starting
with the action's declared `key_prefix`. `write_refusal` is the one check: `opctl validate`
runs it on the command as written (so a `{param}` where a command or parameter name belongs is
refused), the gate on the command as rendered, the executor once more before sending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


# The CONFIG SET parameters an action may change: memory, eviction, expiry and latency tuning.
CONFIG_SET_ALLOWED = frozenset(
    {
        "maxmemory", "maxmemory-policy", "maxmemory-samples", "maxmemory-eviction-tenacity",
        "lazyfree-lazy-eviction", "lazyfree-lazy-expire", "active-expire-effort", "activedefrag",
        "hz", "timeout", "maxclients", "slowlog-log-slower-than", "slowlog-max-len",
        "latency-monitor-threshold", "lfu-log-factor", "lfu-decay-time",
    }
)

# Write commands that write keys: which arguments (after the command name) are keys.
_ALL_ARGS = "all"
_KEY_ARGS: dict[str, str] = {
    **{name: "first" for name in ("SET", "EXPIRE", "PEXPIRE", "PERSIST", "HSET", "HDEL", "HINCRBY", "ZADD", "ZREM",
                                  "ZREMRANGEBYSCORE", "SADD", "SREM", "INCRBY", "DECRBY")},
    "DEL": _ALL_ARGS, "UNLINK": _ALL_ARGS,
}
assert set(_KEY_ARGS) | {"CONFIG SET", "CLIENT KILL", "CLIENT UNPAUSE"} == WRITE


@dataclass(frozen=True)
class WriteRefusal:
    index: int  # the argument at fault (0: the command name)
    reason: str

    def __str__(self) -> str:
        return self.reason


def write_refusal(command: Sequence[object], key_prefix: str | None) -> WriteRefusal | None:
    """Why `command` is not an allowed write for an action with `key_prefix`, or None."""
    name = command_name(command)
    if name not in WRITE:
        return WriteRefusal(0, f"{name!r} is not an allowed write command (allowed: {', '.join(sorted(WRITE))})")
    args = [str(a) for a in command[len(name.split()):]]
    first = len(name.split())
    if name == "CONFIG SET":
        if not args or len(args) % 2:
            return WriteRefusal(0, "CONFIG SET needs parameter and value pairs")
        for i in range(0, len(args), 2):
            if args[i].lower() not in CONFIG_SET_ALLOWED:
                return WriteRefusal(first + i, f"CONFIG SET {args[i]!r} is not allowed (allowed parameters: {', '.join(sorted(CONFIG_SET_ALLOWED))})")
        return None
    which = _KEY_ARGS.get(name)
    if which is None:
        return None
    keys = list(enumerate(args)) if which == _ALL_ARGS else list(enumerate(args))[:1]
    if not keys:
        return WriteRefusal(0, f"{name} needs a key")
    if key_prefix is None:
        return WriteRefusal(0, f"{name} writes keys; declare the action's `key_prefix` (the only keys it may write)")
    for i, key in keys:
        if not key.startswith(key_prefix):
            return WriteRefusal(first + i, f"key {key!r} does not start with the action's key_prefix {key_prefix!r}")
    return None


def vocabulary_markdown() -> str:
    """The command vocabulary, for docs/config.md."""
    keyed = sorted(_KEY_ARGS)
    return "\n".join([
        "## Redis commands",
        "",
        "An observation's `redis.command` is one of these read-only commands: "
        + ", ".join(f"`{c}`" for c in sorted(READ_ONLY)) + ".",
        "",
        "An action's `redis.command` is one of these writes, and `opctl validate` refuses anything else "
        "at its `file:line:col` (the gate and the executor check the rendered command again):",
        "",
        "- key writes: " + ", ".join(f"`{c}`" for c in keyed) + ". Each key (the first argument; every argument "
        "of `DEL` and `UNLINK`) must start with the action's `key_prefix`, written out in the command "
        "(`[SET, \"opctl:flags:{name}\", \"on\"]` with `key_prefix: \"opctl:flags:\"`);",
        "- `CONFIG SET` of these parameters only: " + ", ".join(f"`{p}`" for p in sorted(CONFIG_SET_ALLOWED))
        + ". Never `dir`, `dbfilename`, `save`, `requirepass`, `masterauth`, `*-file`, `rename-command` "
        "or `appendfilename`: with them Redis writes files where it is told or locks its clients out;",
        "- `CLIENT KILL`, `CLIENT UNPAUSE`.",
        "",
        "A `{param}` may fill a value or the part of a key after its prefix, never the command's name "
        "or a `CONFIG SET` parameter name.",
        "",
    ])
