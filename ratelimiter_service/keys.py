"""Redis key names of the limiter: collision-free, hash-tagged, and parseable back.

Layout (prefix `rl` by default):

    rl:lim:{<tag>}:<policy>:<key>:<algorithm code>   limiter state, one key per (policy, key)
    rl:{pol}:data / rl:{pol}:version                  policies (see policies.py)
    rl:{over}:keys                                    the over-limit index (lua/over_limit_index.lua)

The hash tag is chosen by the caller's key, the way Redis Cluster chooses one: the content of
its first non-empty `{...}` if it has one (`user:{42}:read` → `42`), else the whole key. So
every key of one caller key, under any policy, lives in one cluster slot, and a multi-limit
check (one script over several keys) can span policies; callers co-locate different keys by
giving them one `{tag}`. `<key>` is empty when the key is its own tag (most keys), so a plain
key is written once.

Both parts are percent-encoded with nothing left unescaped but `A-Z a-z 0-9 _ . - ~`, so `:`,
`{`, `}`, `%`, spaces and any unicode become `%XX` bytes of UTF-8. Percent-encoding is
injective, so two different (policy, key) pairs never share a Redis key, and the braces of the
hash tag are always the ones this module wrote. Policy names are restricted to
`[A-Za-z0-9_.-]`, so the `:` around the policy are unambiguous.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote

AlgorithmCode = Literal["sw", "log", "gcra"]

ALGORITHM_CODES: dict[str, AlgorithmCode] = {
    "sliding_window": "sw",
    "sliding_log": "log",
    "gcra": "gcra",
}
ALGORITHMS_BY_CODE: dict[str, str] = {code: name for name, code in ALGORITHM_CODES.items()}

POLICY_NAME_PATTERN = r"[A-Za-z0-9_.\-]{1,64}"
_ESCAPED_KEY_PATTERN = r"[A-Za-z0-9_.\-~%]*"
_GLOB_SPECIALS = re.compile(r"([*?\[\]\\])")


DOT_SEGMENTS = frozenset({".", ".."})


def has_dot_segment(text: str) -> bool:
    """True if a `/`-separated segment of `text` is `.` or `..`.

    Policy names and keys become path segments of the management API
    (`/v1/policies/{name}`, `/v1/keys/{policy}/{key}`), and HTTP clients remove dot segments
    before sending: a policy named `..` turned an operator's `DELETE /v1/keys/../node1` into
    `DELETE /v1/nodes/node1` (issue 20, finding 3). Such names and keys are refused.
    """
    return any(segment in DOT_SEGMENTS for segment in text.split("/"))


@dataclass(frozen=True)
class LimiterKey:
    """What a limiter key name says: its policy, the caller's key and the algorithm."""

    policy: str
    key: str
    algorithm: str


def escape_key(key: str) -> str:
    """Percent-encode a caller's key so it contains no `:`, `{`, `}` and no non-ASCII byte."""
    return quote(key, safe="", encoding="utf-8", errors="strict")


def unescape_key(escaped: str) -> str:
    return unquote(escaped, encoding="utf-8", errors="strict")


def limiter_key(prefix: str, policy: str, key: str, algorithm: str) -> str:
    """The Redis key holding the state of `key` under `policy` for `algorithm`."""
    if not re.fullmatch(POLICY_NAME_PATTERN, policy):
        raise ValueError(f"policy name {policy!r} must match {POLICY_NAME_PATTERN}")
    try:
        code = ALGORITHM_CODES[algorithm]
    except KeyError:
        raise ValueError(f"unknown algorithm {algorithm!r}; known: {', '.join(ALGORITHM_CODES)}") from None
    if not key:
        raise ValueError("the key must not be empty")
    tag = caller_tag(key)
    rest = "" if tag == key else escape_key(key)
    return f"{prefix}:lim:{{{escape_key(tag)}}}:{policy}:{rest}:{code}"


def caller_tag(key: str) -> str:
    """The hash tag a caller's key chooses (see the module docstring)."""
    return hash_tag(key)


def over_limit_index_key(prefix: str) -> str:
    """The sorted set of limiter key names whose quota is used up (see lua/over_limit_index.lua)."""
    return f"{prefix}:{{over}}:keys"


def limiter_keys_for_pair(prefix: str, policy: str, key: str) -> list[str]:
    """Every key the pair may have, one per algorithm (a policy may have changed algorithm)."""
    return [limiter_key(prefix, policy, key, algorithm) for algorithm in ALGORITHM_CODES]


def limiter_scan_pattern(prefix: str) -> str:
    """SCAN MATCH pattern that selects limiter keys of `prefix` (and nothing of the registry)."""
    return _GLOB_SPECIALS.sub(r"\\\1", prefix) + ":lim:{*"


def parse_limiter_key(prefix: str, name: str | bytes) -> LimiterKey | None:
    """Inverse of `limiter_key`; None for any name this module did not write."""
    if isinstance(name, bytes):
        try:
            name = name.decode("ascii")
        except UnicodeDecodeError:
            return None
    pattern = (
        re.escape(prefix)
        + r":lim:\{(" + _ESCAPED_KEY_PATTERN + r")\}:(" + POLICY_NAME_PATTERN + r"):("
        + _ESCAPED_KEY_PATTERN + r"):(sw|log|gcra)"
    )
    match = re.fullmatch(pattern, name)
    if match is None:
        return None
    escaped_tag, policy, escaped_rest, code = match.groups()
    try:
        key = unescape_key(escaped_rest or escaped_tag)
    except UnicodeDecodeError:
        return None
    if limiter_key(prefix, policy, key, ALGORITHMS_BY_CODE[code]) != name:
        # Not in canonical form (e.g. `%7b` instead of `%7B`, a tag that is not the key's):
        # someone else wrote it.
        return None
    return LimiterKey(policy=policy, key=key, algorithm=ALGORITHMS_BY_CODE[code])


def hash_tag(name: str) -> str:
    """The part of a key Redis Cluster hashes: the first non-empty `{...}`, else the whole name."""
    start = name.find("{")
    if start != -1:
        end = name.find("}", start + 1)
        if end > start + 1:
            return name[start + 1 : end]
    return name
