"""Properties of the three algorithms for all traffic (hypothesis, injected time, real Redis).

Each Lua script is compared step by step with a small Python model of its rule, and the rule's
promise is checked on the admitted stream itself:

- sliding_log admits exactly what an exact log admits: never more than `limit` in any window.
- sliding_window never admits more than `limit` in an aligned window, and fewer than
  2 x `limit` in any window of length `window_ms` whatever the traffic (the bound is reached
  only by traffic bunched at a window's end; see the statistical test for ordinary traffic).
- gcra admits at most `limit + elapsed * limit / window_ms` in any interval (burst + rate),
  and never refuses requests that keep to the rate.
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratelimiter_service.limiter import Limiter
from ratelimiter_service.policies import Policy
from redis_versions import redis62_server, versioned_redis_url  # noqa: F401  (fixtures)

START = 1_700_000_000_000
PROPERTY_SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# -- models ----------------------------------------------------------------------------------


@dataclass
class ExactLog:
    limit: int
    window: int
    entries: list[tuple[int, int]] = field(default_factory=list)

    def check(self, now: int, cost: int) -> bool:
        used = sum(c for t, c in self.entries if t > now - self.window)
        if used + cost <= self.limit:
            self.entries.append((now, cost))
            return True
        return False


@dataclass
class SlidingWindowModel:
    """The script's rule in Python, with the same float arithmetic."""

    limit: int
    window: int
    w: int | None = None
    c: int = 0
    p: int = 0

    def check(self, now: int, cost: int) -> bool:
        cur = now // self.window
        elapsed = now - cur * self.window
        if self.w == cur:
            c, p = self.c, self.p
        elif self.w == cur - 1:
            c, p = 0, self.c
        else:
            c, p = 0, 0
        if p * ((self.window - elapsed) / self.window) + c + cost <= self.limit + 1e-9:
            self.w, self.c, self.p = cur, c + cost, p
            return True
        return False


@dataclass
class GcraModel:
    limit: int
    window: int
    tat: float | None = None

    def check(self, now: int, cost: int) -> bool:
        interval = self.window / self.limit
        tat = max(self.tat if self.tat is not None else now, now)
        new_tat = tat + cost * interval
        if new_tat - now <= self.window + 1e-6:
            self.tat = new_tat
            return True
        return False


def window_sums(admitted: list[tuple[int, int]], window: int) -> Iterator[int]:
    """Admitted cost in (t - window, t] for every admission time t (where maxima occur)."""
    for t, _ in admitted:
        yield sum(c for s, c in admitted if t - window < s <= t)


# -- driving the real scripts ----------------------------------------------------------------


def decide_all(url: str, policy: Policy, steps: list[tuple[int, int]]) -> list[bool]:
    """Run (time, cost) steps through the real script in order; a fresh key per call."""

    async def main() -> list[bool]:
        client = aioredis.Redis.from_url(url)
        limiter = Limiter(client, test_mode=True)
        key = uuid.uuid4().hex
        try:
            return [(await limiter.check(policy, key, cost, now_ms=now)).allowed for now, cost in steps]
        finally:
            await client.aclose()

    return asyncio.run(main())


@st.composite
def traffic(draw: st.DrawFn, max_gap_factor: float = 1.5) -> tuple[int, int, list[tuple[int, int]]]:
    limit = draw(st.integers(1, 12))
    window = draw(st.integers(1, 4000))
    gaps = st.integers(0, max(1, int(window * max_gap_factor)))
    burst_gaps = st.sampled_from([0, 0, 1, window - 1, window, window + 1])
    items = draw(st.lists(st.tuples(gaps | burst_gaps, st.integers(1, limit + 1)), min_size=1, max_size=40))
    steps, now = [], START + draw(st.integers(0, window))
    for gap, cost in items:
        now += gap
        steps.append((now, cost))
    return limit, window, steps


# -- properties ------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(case=traffic())
def test_sliding_log_is_an_exact_log(versioned_redis_url: str, case: tuple[int, int, list[tuple[int, int]]]) -> None:
    limit, window, steps = case
    policy = Policy(name="log", limit=limit, window_ms=window, algorithm="sliding_log")
    decided = decide_all(versioned_redis_url, policy, steps)
    model = ExactLog(limit, window)
    assert decided == [model.check(now, cost) for now, cost in steps]
    admitted = [step for step, ok in zip(steps, decided) if ok]
    assert max(window_sums(admitted, window), default=0) <= limit


@PROPERTY_SETTINGS
@given(case=traffic())
def test_sliding_window_stays_within_its_bound(
    versioned_redis_url: str, case: tuple[int, int, list[tuple[int, int]]]
) -> None:
    limit, window, steps = case
    policy = Policy(name="win", limit=limit, window_ms=window)
    decided = decide_all(versioned_redis_url, policy, steps)
    model = SlidingWindowModel(limit, window)
    assert decided == [model.check(now, cost) for now, cost in steps]
    admitted = [step for step, ok in zip(steps, decided) if ok]
    per_fixed_window: dict[int, int] = {}
    for t, c in admitted:
        per_fixed_window[t // window] = per_fixed_window.get(t // window, 0) + c
    assert max(per_fixed_window.values(), default=0) <= limit
    assert max(window_sums(admitted, window), default=0) <= 2 * limit - 1


@PROPERTY_SETTINGS
@given(case=traffic())
def test_gcra_respects_rate_and_burst(versioned_redis_url: str, case: tuple[int, int, list[tuple[int, int]]]) -> None:
    limit, window, steps = case
    policy = Policy(name="gcra", limit=limit, window_ms=window, algorithm="gcra")
    decided = decide_all(versioned_redis_url, policy, steps)
    model = GcraModel(limit, window)
    assert decided == [model.check(now, cost) for now, cost in steps]
    admitted = [step for step, ok in zip(steps, decided) if ok]
    for i, (start, _) in enumerate(admitted):
        for j in range(i, len(admitted)):
            elapsed = admitted[j][0] - start
            total = sum(c for _, c in admitted[i : j + 1])
            assert total <= limit + elapsed * limit / window + 1e-6


@PROPERTY_SETTINGS
@given(
    limit=st.integers(1, 50),
    window=st.integers(1, 100_000),
    extra=st.lists(st.integers(0, 50), min_size=1, max_size=30),
)
def test_gcra_never_refuses_traffic_that_keeps_to_the_rate(
    versioned_redis_url: str, limit: int, window: int, extra: list[int]
) -> None:
    interval = math.ceil(window / limit)
    now, steps = START, []
    for slack in extra:
        now += interval + slack
        steps.append((now, 1))
    policy = Policy(name="gcra", limit=limit, window_ms=window, algorithm="gcra")
    assert all(decide_all(versioned_redis_url, policy, steps))


def test_sliding_window_bound_is_reached_only_by_bunched_traffic(redis_url: str) -> None:
    # All of one window's quota at its last ms, then one request per ms: the window ending
    # just before those first requests leave holds 2 x limit - 1. This is why the bound is 2x.
    limit, window = 10, 1000
    steps = [(999, 1)] * limit + [(t, 1) for t in range(1000, 1999)]
    policy = Policy(name="win", limit=limit, window_ms=window)
    decided = decide_all(redis_url, policy, steps)
    admitted = [step for step, ok in zip(steps, decided) if ok]
    assert max(window_sums(admitted, window)) == 2 * limit - 1


# -- accuracy against an exact log on ordinary traffic (the figures we publish) ---------------
#
# Model run (SlidingWindowModel == the script, as the property above shows), limit 50 per 10 s,
# Poisson arrivals, 20 runs x 50 windows per rate:
#
#   offered rate / limit      0.5x  0.9x  1.0x  1.1x  1.5x  2x    5x    10x
#   worst over-admission      0%    20%   22%   26%   16%   8%    4%    2%    (any 10 s window)
#   admitted vs exact log     1.000 1.008 1.013 1.011 1.000 0.992 0.980 0.980
#   mean |estimate - true|    6.6%  4.7%  4.1%  3.7%  2.2%  2.0%  2.8%  4.3%  (Cloudflare: 6%)
#
# Asserted here on the real script with a fixed seed: for Poisson traffic between 0.5x and 5x
# the limit, no window of length window_ms admits more than 1.3 x limit, and the number admitted
# stays within 3% of what an exact log admits. Traffic bunched at window edges can reach the hard
# bound of 2 x limit - 1 (test above); that is the price of O(1) memory.

ACCURACY_RATES = (0.5, 0.9, 1.1, 2.0, 5.0)
ACCURACY_LIMIT = 50
ACCURACY_WINDOW_MS = 10_000
ACCURACY_WINDOWS = 10
MAX_OVER_ADMISSION = 0.30
MAX_ADMITTED_DEVIATION = 0.03


def poisson_steps(rng: random.Random, rate_factor: float) -> list[tuple[int, int]]:
    mean_gap = ACCURACY_WINDOW_MS / (ACCURACY_LIMIT * rate_factor)
    now, end, steps = float(START), START + ACCURACY_WINDOWS * ACCURACY_WINDOW_MS, []
    while True:
        now += rng.expovariate(1 / mean_gap)
        if now >= end:
            return steps
        steps.append((int(now), 1))


def test_sliding_window_accuracy_against_an_exact_log(redis_url: str) -> None:
    rng = random.Random(7)
    policy = Policy(name="acc", limit=ACCURACY_LIMIT, window_ms=ACCURACY_WINDOW_MS)
    for rate in ACCURACY_RATES:
        steps = poisson_steps(rng, rate)
        decided = decide_all(redis_url, policy, steps)
        admitted = [step for step, ok in zip(steps, decided) if ok]
        exact = ExactLog(ACCURACY_LIMIT, ACCURACY_WINDOW_MS)
        exact_admitted = sum(1 for now, cost in steps if exact.check(now, cost))
        worst = max(window_sums(admitted, ACCURACY_WINDOW_MS), default=0)
        assert worst <= ACCURACY_LIMIT * (1 + MAX_OVER_ADMISSION), f"rate {rate}x: {worst} in one window"
        deviation = abs(len(admitted) - exact_admitted) / exact_admitted
        assert deviation <= MAX_ADMITTED_DEVIATION, f"rate {rate}x: admitted {len(admitted)} vs exact {exact_admitted}"
