"""Response headers of a decision: IETF draft-ietf-httpapi-ratelimit-headers-11 and legacy.

- `RateLimit-Policy: "<policy>";q=<limit>;w=<window seconds>`
- `RateLimit: "<policy>";r=<remaining>;t=<seconds until the quota resets>`
- `Retry-After: <seconds>` on 429 (never earlier than the decision's retry time: rounded up)
- `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (delay-seconds, like `t`)
- `X-RateLimit-Failure-Mode: open|closed` when Redis did not take part in the decision; then
  usage is unknown, and no `RateLimit` or `X-RateLimit-Remaining/Reset` header claims a quota

All times are delay-seconds, never timestamps, so no header depends on a synchronised clock.
Policy names are restricted to `[A-Za-z0-9_.-]`, which needs no escaping in a structured string.
"""

from __future__ import annotations

from typing import Literal


def ceil_seconds(ms: int) -> int:
    return max(0, -(-ms // 1000))


def decision_headers(
    *,
    policy: str,
    limit: int,
    window_ms: int,
    allowed: bool,
    remaining: int | None,
    reset_after_ms: int | None,
    retry_after_ms: int,
    failure_mode: Literal["open", "closed"] | None = None,
) -> dict[str, str]:
    headers = {
        "RateLimit-Policy": f'"{policy}";q={limit};w={max(1, ceil_seconds(window_ms))}',
        "X-RateLimit-Limit": str(limit),
    }
    if remaining is not None and reset_after_ms is not None:
        reset_s = ceil_seconds(reset_after_ms)
        remaining = max(0, remaining)
        headers["RateLimit"] = f'"{policy}";r={remaining};t={reset_s}'
        headers["X-RateLimit-Remaining"] = str(remaining)
        headers["X-RateLimit-Reset"] = str(reset_s)
    if not allowed:
        headers["Retry-After"] = str(max(1, ceil_seconds(retry_after_ms)))
    if failure_mode is not None:
        headers["X-RateLimit-Failure-Mode"] = failure_mode
    return headers
