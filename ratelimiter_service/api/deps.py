"""Request-level helpers shared by the routers: the node, the management token, input checks."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ratelimiter_service.keys import has_dot_segment
from ratelimiter_service.policies import Policy

if TYPE_CHECKING:
    from ratelimiter_service.app import Node

bearer = HTTPBearer(auto_error=False, description="RATELIMITER_TOKEN")


def node_of(request: Request) -> Node:
    return request.app.state.node  # type: ignore[no-any-return]


def require_token(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> None:
    """Management endpoints: the configured bearer token, or nothing at all without one."""
    settings = node_of(request).settings
    expected = settings.management_token
    if expected is None:
        if settings.insecure_dev:
            return
        raise HTTPException(
            status_code=403,
            detail="management API disabled: this node has no RATELIMITER_TOKEN "
            "(set one, or RATELIMITER_INSECURE_DEV=true for local development)",
        )
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status_code=401,
            detail="management API needs 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(credentials.credentials.encode("utf-8", "surrogatepass"), expected.encode()):
        raise HTTPException(status_code=401, detail="wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


def invalid(loc: tuple[Any, ...], message: str, kind: str = "value_error") -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": message, "type": kind}])


def check_key(key: str, *, max_bytes: int, loc: tuple[Any, ...]) -> None:
    """A key must be UTF-8 text of at most `max_bytes` bytes with no `.` or `..` path segment,
    which could not be addressed as `/v1/keys/{policy}/{key}` (422 otherwise)."""
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise invalid(loc, "key is not valid UTF-8 text (it contains a lone surrogate)") from None
    if size > max_bytes:
        raise invalid(
            loc, f"key is {size} bytes of UTF-8, above the maximum of {max_bytes} (RATELIMITER_MAX_KEY_BYTES)",
            "string_too_long",
        )
    if has_dot_segment(key):
        raise invalid(loc, f"key {key!r} has a '.' or '..' path segment, which a URL path cannot address")


def policy_or_404(node: Node, name: str) -> Policy:
    policy = node.policies.get(name)
    if policy is None:
        known = ", ".join(sorted(node.policies.all()))
        raise HTTPException(status_code=404, detail=f"unknown policy {name!r}; known policies: {known}")
    return policy


def check_enforceable(node: Node, policy: Policy, loc: tuple[Any, ...]) -> None:
    """An exact log above the node's maximum cannot be enforced (its memory grows with the limit)."""
    if policy.algorithm != "sliding_log":
        return
    biggest = max([policy.limit, *policy.overrides.values()])
    if biggest > node.settings.max_log_limit:
        raise invalid(
            loc,
            f"policy {policy.name!r} uses sliding_log with a limit of {biggest}, above the maximum of "
            f"{node.settings.max_log_limit} (RATELIMITER_MAX_LOG_LIMIT); use sliding_window or gcra",
        )


def check_cost_fits(policy: Policy, key: str, cost: int, loc: tuple[Any, ...]) -> None:
    """A cost above the key's limit (for gcra: its burst, which is the limit) can never be
    admitted: 422, never a 429 that invites retrying."""
    limit = policy.limit_for(key)
    if cost > limit:
        raise invalid(
            loc,
            f"cost {cost} can never fit: policy {policy.name!r} allows at most {limit} per "
            f"{policy.window_ms} ms for this key",
            "cost_above_limit",
        )
