"""Chaos steps: real moves on the real processes of a running lab, never fake data.

    result = await run_step(step, spec)      # StepResult(ok, detail, ...)
    results = await run_steps(scenario.inject, spec)

A step that cannot do its job (process not running, Redis error, unexpected HTTP status,
condition not met in time) returns `ok=False` with a sentence saying why; it does not raise.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import redis.asyncio
import redis.exceptions

from engine.errors import ExpressionError
from engine.expr import compile_expr
from engine.lab import supervisor
from engine.lab.models import HttpArgs, LabError, RedisArgs, Step, WaitUntilArgs
from engine.lab.spec import LabSpec
from engine.observe.values import one_line
from engine.tls import tls_context

Sleep = Callable[[float], Awaitable[None]]
# The operator config's observations, observed now: name -> value (failed ones left out). Only
# `opctl demo` has them (it runs the config); `wait_until: {expr}` needs them.
Observe = Callable[[], Awaitable[Mapping[str, Any]]]
REDIS_TIMEOUT_S = 30.0  # long enough for DEBUG SLEEP; a paused server still answers its pauser
# `{info:used_memory*0.95}` in a redis command: a number from the server's own INFO, so a step
# like "maxmemory just below what is used now" holds on any Redis version and any baseline.
_INFO_REF = re.compile(r"\{info:([a-z_]+)(?:\*([0-9]*\.?[0-9]+))?\}")


@dataclass(frozen=True)
class StepResult:
    kind: str
    ok: bool
    detail: str
    started_at: float  # unix seconds
    elapsed_s: float
    value: Any = None  # the Redis reply, HTTP status, signalled pid...


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    detail: str
    value: Any = None


async def run_step(
    step: Step,
    lab: LabSpec,
    *,
    env: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    observe: Observe | None = None,
) -> StepResult:
    """Run one step against the running lab described by `lab`."""
    started, began = clock(), monotonic()
    try:
        outcome = await _dispatch(step, lab, env, monotonic, sleep, observe)
    except LabError as exc:
        outcome = _Outcome(False, str(exc))
    return StepResult(step.kind, outcome.ok, outcome.detail, started, monotonic() - began, outcome.value)


async def run_steps(
    steps: Sequence[Step],
    lab: LabSpec,
    *,
    env: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    observe: Observe | None = None,
) -> list[StepResult]:
    """Run steps in order; stop after the first that fails (its result is the last one)."""
    results = []
    for step in steps:
        result = await run_step(step, lab, env=env, clock=clock, monotonic=monotonic, sleep=sleep, observe=observe)
        results.append(result)
        if not result.ok:
            break
    return results


async def _dispatch(
    step: Step, lab: LabSpec, env: Mapping[str, str] | None, monotonic: Callable[[], float], sleep: Sleep,
    observe: Observe | None,
) -> _Outcome:
    if step.signal is not None:
        pid = supervisor.signal_process(lab, step.signal.process, step.signal.signal)
        return _Outcome(True, f"sent SIG{step.signal.signal} to {step.signal.process} (pid {pid})", pid)
    if step.restart is not None:
        args = step.restart
        record = await asyncio.to_thread(supervisor.restart_process, lab, args.process, args.env, env=env)
        extra = f" with {', '.join(f'{k}={v}' for k, v in args.env.items())}" if args.env else ""
        return _Outcome(True, f"restarted {args.process}{extra} (pid {record.pid}), ready", record.pid)
    if step.redis is not None:
        return await _redis(lab, step.redis)
    if step.http is not None:
        return await _http(step.http)
    if step.wait is not None:
        await sleep(step.wait)
        return _Outcome(True, f"waited {step.wait:g}s")
    assert step.wait_until is not None
    if step.wait_until.expr is not None and observe is None:
        return _Outcome(False, "`wait_until: {expr}` reads the operator config's observations: it runs in `opctl demo`")
    return await _wait_until(lab, step.wait_until, monotonic, sleep, observe)


async def _redis(lab: LabSpec, args: RedisArgs) -> _Outcome:
    process = lab.process(args.process)
    if process.redis is None:
        return _Outcome(False, f"process '{args.process}' is not a redis process")
    if supervisor.running_record(lab, args.process) is None:
        return _Outcome(False, f"redis process '{args.process}' is not running")
    client = redis.asyncio.Redis(
        host="127.0.0.1", port=process.redis.port, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=2.0
    )
    try:
        command = await _resolve_info(client, args.command)
        shown = " ".join(command)
        reply = _plain(await client.execute_command(*command))
    except LabError as exc:
        return _Outcome(False, f"redis step on {args.process}: {exc}")
    except redis.exceptions.RedisError as exc:
        shown = " ".join(args.command)
        return _Outcome(False, f"redis `{shown}` on {args.process} failed: {exc}")
    finally:
        await client.aclose()
    return _Outcome(True, f"redis `{shown}` on {args.process} -> {reply!r}", reply)


async def _resolve_info(client: redis.asyncio.Redis, command: Sequence[str]) -> list[str]:
    """Replace `{info:FIELD}` / `{info:FIELD*FACTOR}` arguments with INFO values (integers)."""
    if not any(_INFO_REF.search(part) for part in command):
        return list(command)
    info = await client.info("all")

    def value(match: re.Match[str]) -> str:
        name, factor = match.group(1), float(match.group(2) or 1)
        if name not in info:
            raise LabError(f"INFO has no field '{name}'")
        try:
            return str(int(float(info[name]) * factor))
        except (TypeError, ValueError):
            raise LabError(f"INFO field '{name}' is {info[name]!r}, not a number") from None

    return [_INFO_REF.sub(value, part) for part in command]


async def _http(args: HttpArgs) -> _Outcome:
    try:
        async with httpx.AsyncClient(timeout=args.timeout, verify=tls_context()) as client:
            response = await client.request(args.method, args.url, headers=dict(args.headers), json=args.json_body)
    except httpx.HTTPError as exc:
        return _Outcome(False, f"{args.method} {args.url} failed: {exc.__class__.__name__}: {exc}")
    expected = response.status_code in args.expect_status if args.expect_status else response.is_success
    detail = f"{args.method} {args.url} -> {response.status_code}"
    if not expected:
        wanted = ", ".join(map(str, args.expect_status)) or "2xx"
        detail += f" (expected {wanted}): {response.text[:200]}"
    return _Outcome(expected, detail, response.status_code)


async def _wait_until(
    lab: LabSpec, args: WaitUntilArgs, monotonic: Callable[[], float], sleep: Sleep, observe: Observe | None
) -> _Outcome:
    deadline = monotonic() + args.timeout
    last = "nothing observed yet"
    while True:
        met, last = await _condition(lab, args, observe)
        if met:
            return _Outcome(True, f"condition met: {last}")
        if monotonic() >= deadline:
            return _Outcome(False, f"condition not met within {args.timeout:g}s; last: {last}")
        await sleep(args.interval)


async def _condition(lab: LabSpec, args: WaitUntilArgs, observe: Observe | None) -> tuple[bool, str]:
    if args.expr is not None:
        assert observe is not None
        values = {**await observe(), "now": time.time()}
        try:
            result = compile_expr(args.expr).evaluate(values)
        except ExpressionError as exc:
            return False, f"{args.expr}: {one_line(str(exc))}"
        return result is True, f"{args.expr} -> {result!r}"
    if args.http is not None:
        try:
            async with httpx.AsyncClient(timeout=min(args.timeout, 2.0), verify=tls_context()) as client:
                status = (await client.get(args.http)).status_code
        except httpx.HTTPError as exc:
            return False, f"GET {args.http} failed: {exc.__class__.__name__}"
        return status == args.status, f"GET {args.http} -> {status} (want {args.status})"
    assert args.redis is not None
    outcome = await _redis(lab, args.redis)
    if not outcome.ok:
        return False, outcome.detail
    return str(outcome.value) == args.equals, f"{' '.join(args.redis.command)} -> {outcome.value!r} (want {args.equals!r})"


def _plain(reply: Any) -> Any:
    """Redis replies with bytes decoded, for display and comparison."""
    if isinstance(reply, bytes):
        return reply.decode(errors="replace")
    if isinstance(reply, (list, tuple)):
        return [_plain(item) for item in reply]
    if isinstance(reply, dict):
        return {_plain(k): _plain(v) for k, v in reply.items()}
    return reply
