"""Who may use the console: tokens from `OPCTL_SERVE_TOKENS` (comma-separated `name:token:role`,
role `viewer` or `approver`), sent as `Authorization: Bearer TOKEN`.

A token in a header (never a cookie) is what makes the API CSRF-safe: a page on another origin
cannot make the browser send it. Tokens are compared in constant time, each against every
configured one, so timing tells nothing about which prefix matched.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

TOKENS_VARIABLE = "OPCTL_SERVE_TOKENS"
ROLES = ("viewer", "approver")
MIN_TOKEN_LENGTH = 16
# with no tokens configured (loopback only), whoever connects may read and no one may write
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    """The holder of one token; `name` is the actor recorded for its writes (as `console:NAME`)."""

    name: str
    role: Literal["viewer", "approver"]
    token: str = ""

    @property
    def may_write(self) -> bool:
        return self.role == "approver"

    @property
    def actor(self) -> str:
        return f"console:{self.name}"


class TokensError(ValueError):
    """OPCTL_SERVE_TOKENS cannot be read; the message names the entry."""


def parse_tokens(text: str) -> tuple[Principal, ...]:
    """The principals of an OPCTL_SERVE_TOKENS value (empty: none)."""
    found: list[Principal] = []
    for index, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) != 3 or not all(parts):
            raise TokensError(f"{TOKENS_VARIABLE} entry {index}: write name:token:role (got {len(parts)} part(s))")
        name, token, role = parts
        if role not in ROLES:
            raise TokensError(f"{TOKENS_VARIABLE} entry {index} ({name}): role {role!r} is not viewer or approver")
        if len(token) < MIN_TOKEN_LENGTH:
            raise TokensError(f"{TOKENS_VARIABLE} entry {index} ({name}): the token is shorter than {MIN_TOKEN_LENGTH} characters")
        if any(p.name == name for p in found):
            raise TokensError(f"{TOKENS_VARIABLE} entry {index}: the name {name!r} is given twice")
        if any(hmac.compare_digest(p.token, token) for p in found):
            raise TokensError(f"{TOKENS_VARIABLE} entry {index} ({name}): the token is already another entry's")
        found.append(Principal(name, role, token))  # type: ignore[arg-type]
    return tuple(found)


def tokens_from_env(env: Mapping[str, str]) -> tuple[Principal, ...]:
    return parse_tokens(env.get(TOKENS_VARIABLE, ""))


def authenticate(principals: tuple[Principal, ...], authorization: str | None) -> Principal | None:
    """The principal whose token the `Authorization` header carries, or None."""
    if authorization is None:
        return None
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    given_bytes = given.strip().encode()
    match = None
    for principal in principals:  # no early exit: every token is compared
        if hmac.compare_digest(principal.token.encode(), given_bytes):
            match = principal
    return match


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
