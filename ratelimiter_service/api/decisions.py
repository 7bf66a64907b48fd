"""From a limiter decision (or a Redis failure) to what the API answers, counted once.

- Shadow policies admit everything; a request the limit would have denied is reported with
  `shadow_denied` and counted as such.
- When Redis fails or misses the deadline (while answering nothing else: a node that is merely
  busy waits up to `RATELIMITER_REDIS_BUSY_PATIENCE_MS`), the policy's failure mode decides: `open` admits,
  `closed` denies with a 1 s retry hint. Usage is unknown then, so `remaining` and
  `reset_after_ms` are None (null, and no `RateLimit` header claims a quota). Both are flagged
  (`failure_mode`, header `X-RateLimit-Failure-Mode`) and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from redis.exceptions import RedisError

from ratelimiter_service.limiter import Decision
from ratelimiter_service.policies import Policy
from ratelimiter_service.redis_client import within_deadline

if TYPE_CHECKING:
    from ratelimiter_service.app import Node

CLOSED_RETRY_AFTER_MS = 1_000
# A pipelined batch needs more than one decision's deadline: allow this much per check on top.
BATCH_PER_CHECK_S = 0.0002


@dataclass(frozen=True)
class Outcome:
    policy: Policy
    allowed: bool
    limit: int
    remaining: int | None  # None: unknown (decided without Redis)
    reset_after_ms: int | None
    retry_after_ms: int
    failure_mode: Literal["open", "closed"] | None = None
    shadow_denied: bool = False


def from_decision(policy: Policy, decision: Decision) -> Outcome:
    shadow_denied = policy.shadow and not decision.allowed
    return Outcome(
        policy=policy,
        allowed=decision.allowed or shadow_denied,
        limit=decision.limit,
        remaining=decision.remaining,
        reset_after_ms=decision.reset_after_ms,
        retry_after_ms=0 if shadow_denied else decision.retry_after_ms,
        shadow_denied=shadow_denied,
    )


def without_redis(policy: Policy, key: str) -> Outcome:
    limit = policy.limit_for(key)
    if policy.failure_mode == "open":
        return Outcome(policy, True, limit, None, None, 0, failure_mode="open")
    if policy.shadow:
        return Outcome(policy, True, limit, None, None, 0, failure_mode="closed", shadow_denied=True)
    return Outcome(policy, False, limit, None, None, CLOSED_RETRY_AFTER_MS, failure_mode="closed")


def record(node: Node, outcome: Outcome) -> None:
    node.counters.decisions += 1
    name = outcome.policy.name
    if outcome.failure_mode is not None:
        node.counters.failure_mode_decisions += 1
        node.metrics.failure_mode_decisions.labels(name, outcome.failure_mode).inc()
    if outcome.shadow_denied:
        result = "shadow_denied"
    else:
        result = "allowed" if outcome.allowed else "denied"
    node.metrics.decisions.labels(name, result).inc()
    node.events.decided(outcome.failure_mode)


async def decide_one(node: Node, policy: Policy, key: str, cost: int, now_ms: int | None) -> Outcome:
    """One decision within the Redis deadline. A caller's mistake raises `ValueError`."""
    try:
        decision = await within_deadline(
            node.limiter.check(policy, key, cost, now_ms=now_ms),
            node.settings.deadline_s,
            progress=node.redis_progress,
            patience_s=node.settings.busy_patience_s,
        )
    except RedisError as exc:
        node.redis_error("check", exc)
        outcome = without_redis(policy, key)
    else:
        node.events.redis_answered()
        outcome = from_decision(policy, decision)
    record(node, outcome)
    return outcome


async def peek_one(node: Node, policy: Policy, key: str, now_ms: int | None) -> Outcome:
    """The state of `key` without charging it (`cost: 0`): `allowed` says whether a request of
    cost 1 would be admitted now. Not counted as a decision."""
    try:
        usage = await within_deadline(
            node.limiter.usage(policy, key, now_ms=now_ms),
            node.settings.deadline_s,
            progress=node.redis_progress,
            patience_s=node.settings.busy_patience_s,
        )
    except RedisError as exc:
        node.redis_error("check", exc)
        return without_redis(policy, key)
    return Outcome(policy, usage.remaining > 0, usage.limit, usage.remaining, usage.reset_after_ms, 0)


@dataclass(frozen=True)
class MultiOutcome:
    allowed: bool
    outcomes: tuple[Outcome, ...]  # per limit: whether it admits (charged only if `allowed`)
    binding: int

    @property
    def failure_mode(self) -> Literal["open", "closed"] | None:
        modes = {o.failure_mode for o in self.outcomes if o.failure_mode is not None}
        return "closed" if "closed" in modes else ("open" if modes else None)

    @property
    def retry_after_ms(self) -> int:
        return max((o.retry_after_ms for o in self.outcomes), default=0) if not self.allowed else 0


def binding_of(allowed: bool, outcomes: Sequence[Outcome]) -> int:
    """The limit that decided: denied, the one with the longest retry (the wait that lets every
    limit pass); allowed, the one with the least remaining."""
    indexes = range(len(outcomes))
    if not allowed:
        return max(indexes, key=lambda i: (not outcomes[i].allowed, outcomes[i].retry_after_ms))
    return min(indexes, key=lambda i: outcomes[i].remaining if outcomes[i].remaining is not None else 0)


async def decide_all(node: Node, limits: Sequence[tuple[Policy, str, int]], now_ms: int | None) -> MultiOutcome:
    """Several limits in one atomic script run (see `Limiter.check_all`); without Redis, each
    policy's failure mode, and the check is admitted only if every enforced one admits."""
    try:
        decision = await within_deadline(
            node.limiter.check_all(limits, now_ms=now_ms),
            node.settings.deadline_s,
            progress=node.redis_progress,
            patience_s=node.settings.busy_patience_s,
        )
    except RedisError as exc:
        node.redis_error("check", exc)
        outcomes = tuple(without_redis(policy, key) for policy, key, _ in limits)
        allowed = all(o.allowed for o in outcomes)
    else:
        node.events.redis_answered()
        outcomes = tuple(from_decision(policy, d) for (policy, _, _), d in zip(limits, decision.decisions))
        allowed = decision.allowed
    for outcome in outcomes:
        record(node, outcome)
    return MultiOutcome(allowed, outcomes, binding_of(allowed, outcomes))


class BatchItemError(ValueError):
    """A check of a batch cannot be decided because of the caller's input; `index` names it."""

    def __init__(self, index: int, error: ValueError) -> None:
        super().__init__(f"checks.{index}: {error}")
        self.index = index


async def decide_many(node: Node, checks: Sequence[tuple[Policy, str, int]]) -> list[Outcome]:
    """Decisions in order, one pipeline round trip. A caller's mistake raises `BatchItemError`."""
    timeout = node.settings.deadline_s + BATCH_PER_CHECK_S * len(checks)
    replies: Sequence[Decision | Exception]
    try:
        replies = await within_deadline(
            node.limiter.check_batch(checks),
            timeout,
            progress=node.redis_progress,
            patience_s=max(timeout, node.settings.busy_patience_s),
        )
    except RedisError as exc:
        replies = [exc] * len(checks)
    for index, reply in enumerate(replies):
        if isinstance(reply, ValueError):
            raise BatchItemError(index, reply)
    outcomes: list[Outcome] = []
    redis_failed: Exception | None = None
    for (policy, key, _cost), reply in zip(checks, replies):
        if isinstance(reply, Exception):
            redis_failed = reply
            outcome = without_redis(policy, key)
        else:
            outcome = from_decision(policy, reply)
        record(node, outcome)
        outcomes.append(outcome)
    if redis_failed is not None:
        node.redis_error("check_batch", redis_failed)
    else:
        node.events.redis_answered()
    return outcomes
