"""What one delivery attempt gave: delivered, or why not and whether to try again."""

from __future__ import annotations

from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Outcome:
    ok: bool
    retry: bool  # a 5xx, a 429 or a network error: the receiver may take it later
    error: str | None
    http_status: int | None


def outcome_of(response: httpx.Response) -> Outcome:
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(True, False, None, status)
    return Outcome(False, status >= 500 or status == 429, f"HTTP {status}: {response.text[:200]}", status)
