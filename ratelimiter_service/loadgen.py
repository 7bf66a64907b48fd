"""Realistic traffic for a limiter cluster: `python -m ratelimiter_service.loadgen`.

    python -m ratelimiter_service.loadgen --targets http://127.0.0.1:18081,http://127.0.0.1:18082 \
        --rps 40 --duration 60 --keys 2000 --hot-keys 3 --over-limit-keys 2

Traffic: most requests go to `user-<rank>` keys drawn from a Zipf-like distribution (a long tail
of rarely seen users), a share to a few `hot-<n>` keys, and a share to `over-<n>` keys hit far
above any sane limit, so 429s are part of normal load. Requests rotate over the nodes
(round-robin or random) through `POST /v1/check`, and now and then `POST /v1/check/batch`.
A node that fails is counted and skipped over; the run goes on. The run is bounded by
`--duration` and `--max-requests`; it prints `{"event": "started"}` once, optional progress
lines, and a JSON summary line on exit, including on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from ratelimiter_service.keys import limiter_key

def flood_keyspace(client: Any, count: int, *, prefix: str = "rl", policy: str = "default") -> None:
    """Write `count` limiter keys (`flood-<i>`, one request each) straight into Redis, as the
    key flood of issue 20 left them: the keyspace a listing must not have to scan. `client`
    is a sync redis-py client."""
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        pipe.hset(limiter_key(prefix, policy, f"flood-{i}", "sliding_window"), "0", 1)
        if i % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()


HOT_SHARE = 0.2
OVER_LIMIT_SHARE = 0.1


@dataclass(frozen=True)
class LoadConfig:
    targets: tuple[str, ...]
    rps: float = 40.0
    duration_s: float = 60.0
    max_requests: int = 0  # 0: no bound but the duration
    keys: int = 2000
    hot_keys: int = 3
    over_limit_keys: int = 2
    zipf_s: float = 1.1
    policy: str = "default"
    token: str | None = None
    batch_every: int = 25  # every Nth request is a batch; 0: never
    batch_size: int = 8
    concurrency: int = 32
    pick: str = "round-robin"  # or "random"
    timeout_s: float = 1.0
    report_every_s: float = 0.0
    seed: int | None = None


class TrafficMix:
    """Which key the next request is for: Zipf-like users, a few hot keys, some over-limit keys."""

    def __init__(self, config: LoadConfig, rng: random.Random) -> None:
        self._rng = rng
        self._config = config
        weights = [1.0 / (rank + 1) ** config.zipf_s for rank in range(config.keys)]
        self._cumulative = list(itertools.accumulate(weights))

    def next_key(self) -> str:
        config, draw = self._config, self._rng.random()
        if config.over_limit_keys and draw < OVER_LIMIT_SHARE:
            return f"over-{self._rng.randrange(config.over_limit_keys)}"
        if config.hot_keys and draw < OVER_LIMIT_SHARE + HOT_SHARE:
            return f"hot-{self._rng.randrange(config.hot_keys)}"
        if not config.keys:
            return "user-0"
        point = self._rng.random() * self._cumulative[-1]
        return f"user-{min(bisect.bisect_left(self._cumulative, point), config.keys - 1)}"


@dataclass
class Tally:
    """Running totals of decisions and failures, per node too."""

    requests: int = 0
    decisions: int = 0
    allowed: int = 0
    denied: int = 0
    failure_mode: int = 0
    batches: int = 0
    errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    per_target: dict[str, Counter[str]] = field(default_factory=dict)

    def decision(self, target: str, allowed: bool, failure_mode: Any) -> None:
        self.decisions += 1
        if allowed:
            self.allowed += 1
        else:
            self.denied += 1
        if failure_mode:
            self.failure_mode += 1
        self.per_target.setdefault(target, Counter())["decisions"] += 1

    def error(self, target: str, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] += 1
        self.per_target.setdefault(target, Counter())["errors"] += 1

    def summary(self, event: str, elapsed_s: float) -> dict[str, Any]:
        return {
            "event": event,
            "elapsed_s": round(elapsed_s, 3),
            "requests": self.requests,
            "decisions": self.decisions,
            "allowed": self.allowed,
            "denied": self.denied,
            "failure_mode": self.failure_mode,
            "batches": self.batches,
            "errors": self.errors,
            "error_kinds": dict(self.error_kinds),
            "rps": round(self.requests / elapsed_s, 2) if elapsed_s > 0 else 0.0,
            "targets": {target: dict(counts) for target, counts in sorted(self.per_target.items())},
        }


async def run_load(
    config: LoadConfig,
    stop: asyncio.Event,
    *,
    emit: Callable[[dict[str, Any]], None],
    clock: Callable[[], float] = time.monotonic,
    client: httpx.AsyncClient | None = None,
) -> Tally:
    """Send paced traffic until the duration, the request bound or `stop`; returns the totals."""
    rng = random.Random(config.seed)
    mix = TrafficMix(config, rng)
    tally = Tally()
    headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
    own_client = client is None
    http = client or httpx.AsyncClient(
        timeout=config.timeout_s, headers=headers, limits=httpx.Limits(max_connections=config.concurrency)
    )
    slots = asyncio.Semaphore(config.concurrency)
    rotation = itertools.cycle(config.targets)
    in_flight: set[asyncio.Task[None]] = set()
    started = clock()
    next_report = started + config.report_every_s if config.report_every_s > 0 else float("inf")
    emit({"event": "started", "targets": list(config.targets), "rps": config.rps})
    try:
        for index in itertools.count():
            now = clock()
            if stop.is_set() or now - started >= config.duration_s:
                break
            if config.max_requests and index >= config.max_requests:
                break
            if now >= next_report:
                emit(tally.summary("progress", now - started))
                next_report += config.report_every_s
            # Paced against the schedule, not the last send: a slow node does not lower the rate.
            delay = started + index / config.rps - now
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                    break
                except TimeoutError:
                    pass
            target = rng.choice(config.targets) if config.pick == "random" else next(rotation)
            is_batch = config.batch_every > 0 and index % config.batch_every == config.batch_every - 1
            keys = [mix.next_key() for _ in range(config.batch_size if is_batch else 1)]
            await slots.acquire()
            tally.requests += 1
            task = asyncio.create_task(_send(http, target, config.policy, keys, is_batch, tally))
            in_flight.add(task)
            task.add_done_callback(lambda done: (in_flight.discard(done), slots.release()))
        if in_flight:
            await asyncio.wait(in_flight, timeout=config.timeout_s + 1)
    finally:
        if own_client:
            await http.aclose()
    return tally


async def _send(
    http: httpx.AsyncClient, target: str, policy: str, keys: Sequence[str], is_batch: bool, tally: Tally
) -> None:
    try:
        if is_batch:
            tally.batches += 1
            response = await http.post(
                f"{target}/v1/check/batch", json={"checks": [{"policy": policy, "key": key} for key in keys]}
            )
            if response.status_code != 200:
                tally.error(target, f"http_{response.status_code}")
                return
            for result in response.json()["results"]:
                tally.decision(target, bool(result["allowed"]), result.get("failure_mode"))
            return
        response = await http.post(f"{target}/v1/check", json={"policy": policy, "key": keys[0]})
        if response.status_code not in (200, 429):
            tally.error(target, f"http_{response.status_code}")
            return
        body = response.json()
        tally.decision(target, response.status_code == 200, body.get("failure_mode"))
    except httpx.TimeoutException:
        tally.error(target, "timeout")
    except httpx.HTTPError as exc:
        tally.error(target, exc.__class__.__name__)
    except (ValueError, KeyError, TypeError):
        tally.error(target, "bad_body")


# ------------------------------------------------------------------------------------ command line


def parse_args(argv: Sequence[str] | None = None) -> LoadConfig:
    parser = argparse.ArgumentParser(
        prog="python -m ratelimiter_service.loadgen", description="Realistic traffic for a rate limiter cluster."
    )
    parser.add_argument("--targets", required=True, help="Comma-separated node base URLs.")
    parser.add_argument("--rps", type=float, default=40.0, help="Requests per second, all nodes together.")
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds to run.")
    parser.add_argument("--max-requests", type=int, default=0, help="Stop after this many requests (0: no bound).")
    parser.add_argument("--keys", type=int, default=2000, help="Distinct user keys (Zipf-distributed).")
    parser.add_argument("--hot-keys", type=int, default=3, help=f"Hot keys taking {HOT_SHARE:.0%} of traffic.")
    parser.add_argument(
        "--over-limit-keys", type=int, default=2, help=f"Keys taking {OVER_LIMIT_SHARE:.0%} of traffic, far over any limit."
    )
    parser.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of user keys.")
    parser.add_argument("--policy", default="default", help="Policy name sent with every check.")
    parser.add_argument("--token", default=None, help="Bearer token (sent when given).")
    parser.add_argument("--batch-every", type=int, default=25, help="Every Nth request is a batch (0: never).")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=32, help="Requests in flight at most.")
    parser.add_argument("--pick", choices=["round-robin", "random"], default="round-robin")
    parser.add_argument("--timeout", type=float, default=1.0, help="Per-request timeout in seconds.")
    parser.add_argument("--report-every", type=float, default=0.0, help="Seconds between progress lines (0: none).")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    targets = tuple(t.strip().rstrip("/") for t in args.targets.split(",") if t.strip())
    checks = [
        (bool(targets), "--targets needs at least one URL"),
        (all(t.startswith(("http://", "https://")) for t in targets), "--targets must be http(s) URLs"),
        (args.rps > 0, "--rps must be above 0"),
        (args.duration > 0, "--duration must be above 0"),
        (args.max_requests >= 0, "--max-requests must be 0 or more"),
        (min(args.keys, args.hot_keys, args.over_limit_keys) >= 0, "key counts must be 0 or more"),
        (args.keys + args.hot_keys + args.over_limit_keys > 0, "give at least one key"),
        (args.batch_every >= 0 and args.batch_size >= 1, "--batch-every must be >= 0 and --batch-size >= 1"),
        (args.concurrency >= 1 and args.timeout > 0, "--concurrency and --timeout must be positive"),
    ]
    for ok, message in checks:
        if not ok:
            parser.error(message)
    return LoadConfig(
        targets=targets,
        rps=args.rps,
        duration_s=args.duration,
        max_requests=args.max_requests,
        keys=args.keys,
        hot_keys=args.hot_keys,
        over_limit_keys=args.over_limit_keys,
        zipf_s=args.zipf,
        policy=args.policy,
        token=args.token,
        batch_every=args.batch_every,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        pick=args.pick,
        timeout_s=args.timeout,
        report_every_s=args.report_every,
        seed=args.seed,
    )


def _print_line(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, sort_keys=True), flush=True)


async def _main(config: LoadConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    tally = await run_load(config, stop, emit=_print_line)
    _print_line(tally.summary("summary", time.monotonic() - started))


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    asyncio.run(_main(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
