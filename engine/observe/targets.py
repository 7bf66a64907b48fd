"""Endpoint modes of a target: which endpoints one observation asks, and what the answers make.

* single: the one endpoint's value;
* failover: endpoints in order until one succeeds; its value;
* fanout: every endpoint at once; a list of `{endpoint, ok, value, error}` in endpoint order.
  The observation fails only when every endpoint failed.

`attempt(endpoint)` returns a value or raises ObservationError with a one-line reason; any other
exception is not this module's business and propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import ObservationError

Attempt = Callable[[str], Awaitable[Any]]


@dataclass(frozen=True)
class EndpointAnswer:
    endpoint: str
    ok: bool
    value: Any
    error: str | None

    def tagged(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "ok": self.ok, "value": self.value, "error": self.error}


@dataclass(frozen=True)
class TargetOutcome:
    ok: bool
    value: Any
    error: str | None
    endpoint: str | None  # the endpoint whose value this is (single, failover)
    endpoint_errors: tuple[tuple[str, str], ...]


async def ask(endpoint: str, attempt: Attempt) -> EndpointAnswer:
    try:
        return EndpointAnswer(endpoint, True, await attempt(endpoint), None)
    except ObservationError as exc:
        return EndpointAnswer(endpoint, False, None, str(exc))


async def observe_target(mode: str, endpoints: Sequence[str], attempt: Attempt) -> TargetOutcome:
    if mode == "fanout":
        return _fanout(await asyncio.gather(*(ask(e, attempt) for e in endpoints)))
    if mode == "failover":
        return await _failover(endpoints, attempt)
    if mode == "single" and len(endpoints) == 1:
        answer = await ask(endpoints[0], attempt)
        failed = ((answer.endpoint, answer.error),) if answer.error is not None else ()
        return TargetOutcome(answer.ok, answer.value, answer.error, answer.endpoint, failed)
    raise ValueError(f"target mode {mode!r} with {len(endpoints)} endpoint(s) is not valid")


def _fanout(answers: Sequence[EndpointAnswer]) -> TargetOutcome:
    failed = tuple((a.endpoint, a.error) for a in answers if a.error is not None)
    if len(failed) == len(answers):
        return TargetOutcome(False, None, _all_failed(failed), None, failed)
    return TargetOutcome(True, [a.tagged() for a in answers], None, None, failed)


async def _failover(endpoints: Sequence[str], attempt: Attempt) -> TargetOutcome:
    failed: list[tuple[str, str]] = []
    for endpoint in endpoints:
        answer = await ask(endpoint, attempt)
        if answer.ok:
            return TargetOutcome(True, answer.value, None, endpoint, tuple(failed))
        failed.append((endpoint, str(answer.error)))
    return TargetOutcome(False, None, _all_failed(failed), None, tuple(failed))


def _all_failed(failed: Sequence[tuple[str, str]]) -> str:
    if len(failed) == 1:
        return failed[0][1]
    return f"all {len(failed)} endpoints failed: " + "; ".join(reason for _, reason in failed)
