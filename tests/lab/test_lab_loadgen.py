"""The load generator: its traffic mix, and real runs against real HTTP servers."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratelimiter_service.loadgen import LoadConfig, TrafficMix, parse_args, run_load
from tests.json_server import JsonServer

DECISION = {"allowed": True, "failure_mode": None}


@settings(max_examples=60, deadline=None)
@given(
    keys=st.integers(0, 300),
    hot=st.integers(0, 5),
    over=st.integers(0, 5),
    seed=st.integers(0, 2**32),
)
def test_every_key_is_from_the_declared_key_space(keys: int, hot: int, over: int, seed: int) -> None:
    config = LoadConfig(targets=("http://x",), keys=keys, hot_keys=hot, over_limit_keys=over)
    mix = TrafficMix(config, random.Random(seed))
    allowed = {f"user-{i}" for i in range(max(keys, 1))} | {f"hot-{i}" for i in range(hot)} | {f"over-{i}" for i in range(over)}
    assert all(mix.next_key() in allowed for _ in range(200))


def test_mix_is_zipf_like_with_hot_and_over_limit_shares() -> None:
    config = LoadConfig(targets=("http://x",), keys=1000, hot_keys=3, over_limit_keys=2)
    mix = TrafficMix(config, random.Random(7))
    counts = Counter(mix.next_key() for _ in range(20_000))
    over = sum(v for k, v in counts.items() if k.startswith("over-"))
    hot = sum(v for k, v in counts.items() if k.startswith("hot-"))
    assert 0.08 < over / 20_000 < 0.12 and 0.17 < hot / 20_000 < 0.23
    assert counts["user-0"] > counts["user-10"] > counts["user-500"]  # a long tail
    assert len([k for k in counts if k.startswith("user-")]) > 300  # many distinct keys


def test_run_counts_decisions_batches_and_node_failures() -> None:
    with JsonServer() as allowing, JsonServer() as denying:
        allowing.set("/v1/check", DECISION)
        allowing.set("/v1/check/batch", {"results": [DECISION, DECISION]})
        denying.set("/v1/check", {"allowed": False, "failure_mode": "open"}, status=429)
        denying.set("/v1/check/batch", {"results": [{"allowed": False, "failure_mode": None}]})
        dead = "http://127.0.0.1:1"
        config = LoadConfig(
            targets=(allowing.url, denying.url, dead), rps=2000, max_requests=60, duration_s=30, batch_every=5,
            token="secret", seed=1, timeout_s=5,
        )
        lines: list[dict[str, object]] = []
        tally = asyncio.run(run_load(config, asyncio.Event(), emit=lines.append))
        assert lines[0]["event"] == "started"
        assert tally.requests == 60 and tally.batches == 12
        assert tally.errors == 20 and tally.error_kinds == Counter({"ConnectError": 20}), tally  # the dead node, skipped over
        assert tally.allowed > 0 and tally.denied > 0 and tally.failure_mode > 0
        assert tally.decisions == tally.allowed + tally.denied
        assert all(r[2].get("Authorization") == "Bearer secret" for r in allowing.requests)
        paths = Counter(r[1] for r in allowing.requests)
        assert paths["/v1/check"] > 0 and paths["/v1/check/batch"] > 0
        summary = tally.summary("summary", 1.0)
        assert summary["targets"][dead] == {"errors": 20}  # type: ignore[index]


def test_stop_event_ends_a_run_early() -> None:
    with JsonServer() as node:
        node.set("/v1/check", DECISION)
        config = LoadConfig(targets=(node.url,), rps=5, duration_s=60)

        async def go() -> int:
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(0.3, stop.set)
            return (await run_load(config, stop, emit=lambda _: None)).requests

        assert 1 <= asyncio.run(go()) <= 3


def test_bad_arguments_are_refused_plainly() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--targets", "ftp://x"])
    result = subprocess.run(
        [sys.executable, "-m", "ratelimiter_service.loadgen", "--targets", "http://127.0.0.1:1", "--rps", "0"],
        capture_output=True, text=True,
    )
    assert result.returncode == 2 and "--rps must be above 0" in result.stderr and "Traceback" not in result.stderr
