"""Every chaos step kind against the real processes of a small lab."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from engine.lab import supervisor
from engine.lab.chaos import run_step, run_steps
from engine.lab.models import Step
from engine.lab.spec import LabSpec
from tests.lab.lab_support import small_lab


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabSpec]:
    spec = small_lab(tmp_path)
    supervisor.up(spec)
    yield spec
    supervisor.down(spec)


def step(raw: dict[str, object]) -> Step:
    return Step.model_validate(raw)


def run(raw: dict[str, object], lab: LabSpec, **kwargs: object):  # type: ignore[no-untyped-def]
    return asyncio.run(run_step(step(raw), lab, **kwargs))  # type: ignore[arg-type]


def proc_state(pid: int, want: str) -> str:
    """The process's state letter once it is `want` (signals land asynchronously), or after 5 s."""
    deadline = time.monotonic() + 5
    while True:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == want or time.monotonic() > deadline:
            return state
        time.sleep(0.01)


def test_signal_stop_cont_kill(lab: LabSpec) -> None:
    pid = supervisor.running_record(lab, "web").pid  # type: ignore[union-attr]
    stopped = run({"signal": {"process": "web", "signal": "STOP"}}, lab)
    assert stopped.ok and stopped.value == pid and proc_state(pid, "T") == "T"
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{lab.process('web').default_endpoint()}/health", timeout=0.3)
    assert run({"signal": {"process": "web", "signal": "CONT"}}, lab).ok
    assert httpx.get(f"{lab.process('web').default_endpoint()}/health").status_code == 200
    killed = run({"signal": {"process": "web", "signal": "KILL"}}, lab)
    assert killed.ok and "sent SIGKILL to web" in killed.detail
    assert not supervisor.status(lab).process("web").running
    again = run({"signal": {"process": "web", "signal": "KILL"}}, lab)
    assert not again.ok and "process 'web' of lab 'small' is not running" in again.detail


def test_restart_after_kill_with_env(lab: LabSpec) -> None:
    run({"signal": {"process": "web", "signal": "KILL"}}, lab)
    result = run({"restart": {"process": "web", "env": {"TINY_ECHO": "restarted"}}}, lab)
    assert result.ok, result.detail
    assert "TINY_ECHO=restarted" in result.detail
    body = httpx.get(f"{lab.process('web').default_endpoint()}/health").json()
    assert body == {"status": "ok", "pid": result.value, "env": "restarted"}


def test_redis_commands_and_info_references(lab: LabSpec) -> None:
    port = lab.process("store").redis.port  # type: ignore[union-attr]
    client = redis.Redis(port=port, decode_responses=True)
    try:
        assert run({"redis": {"process": "store", "command": ["HSET", "rl:lim:{default:k}:sw", "c", 7]}}, lab).ok
        assert client.hget("rl:lim:{default:k}:sw", "c") == "7"
        used = int(client.info("memory")["used_memory"])
        result = run({"redis": {"process": "store", "command": ["CONFIG", "SET", "maxmemory", "{info:used_memory*2}"]}}, lab)
        assert result.ok and result.value == "OK"
        maxmemory = int(client.config_get("maxmemory")["maxmemory"])
        assert used < maxmemory < 3 * used  # twice what was used at that moment
        bad = run({"redis": {"process": "store", "command": ["NOSUCHCOMMAND"]}}, lab)
        assert not bad.ok and "unknown command" in bad.detail.lower()
        missing = run({"redis": {"process": "store", "command": ["GET", "{info:no_such_field}"]}}, lab)
        assert not missing.ok and "INFO has no field 'no_such_field'" in missing.detail
        not_redis = run({"redis": {"process": "web", "command": ["PING"]}}, lab)
        assert not not_redis.ok and "not a redis process" in not_redis.detail
    finally:
        client.close()


def test_client_pause_stalls_other_clients(lab: LabSpec) -> None:
    port = lab.process("store").redis.port  # type: ignore[union-attr]
    assert run({"redis": {"process": "store", "command": ["CLIENT", "PAUSE", "1500", "ALL"]}}, lab).ok
    client = redis.Redis(port=port)
    try:
        began = time.monotonic()
        client.get("anything")
        assert time.monotonic() - began > 0.8  # held until the pause (1.5 s from the step) ends
    finally:
        client.close()


def test_http_step_status_expectations(lab: LabSpec) -> None:
    base = lab.process("web").default_endpoint()
    ok = run({"http": {"url": f"{base}/health"}}, lab)
    assert ok.ok and ok.value == 200
    missing = run({"http": {"method": "GET", "url": f"{base}/nope"}}, lab)
    assert not missing.ok and "-> 404 (expected 2xx)" in missing.detail
    assert run({"http": {"url": f"{base}/nope", "expect_status": [404]}}, lab).ok
    refused = run({"http": {"url": "http://127.0.0.1:1/x"}}, lab)
    assert not refused.ok and "ConnectError" in refused.detail


def test_wait_uses_the_injected_sleep(lab: LabSpec) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    result = run({"wait": "1500ms"}, lab, sleep=fake_sleep)
    assert result.ok and slept == [1.5]


def test_wait_until_http_and_redis(lab: LabSpec) -> None:
    base = lab.process("web").default_endpoint()
    assert run({"wait_until": {"http": f"{base}/health", "status": 200, "timeout": "2s"}}, lab).ok
    port = lab.process("store").redis.port  # type: ignore[union-attr]
    redis.Redis(port=port).set("flag", "on")
    met = run({"wait_until": {"redis": {"process": "store", "command": ["GET", "flag"]}, "equals": "on"}}, lab)
    assert met.ok and "condition met" in met.detail


def test_wait_until_times_out_on_an_injected_clock(lab: LabSpec) -> None:
    now = [100.0]

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    result = run(
        {"wait_until": {"http": f"{lab.process('web').default_endpoint()}/health", "status": 503, "timeout": "5s", "interval": "1s"}},
        lab,
        sleep=fake_sleep,
        monotonic=lambda: now[0],
    )
    assert not result.ok
    assert "condition not met within 5s; last: GET" in result.detail and "-> 200 (want 503)" in result.detail
    assert now[0] == 105.0


def test_run_steps_stops_at_the_first_failure(lab: LabSpec) -> None:
    steps = [
        step({"http": {"url": f"{lab.process('web').default_endpoint()}/health"}}),
        step({"signal": {"process": "logger", "signal": "TERM"}}),
        step({"signal": {"process": "logger", "signal": "TERM"}}),
        step({"http": {"url": f"{lab.process('web').default_endpoint()}/health"}}),
    ]
    results = asyncio.run(run_steps(steps, lab))
    assert [r.ok for r in results[:2]] == [True, True]
    # The TERMed logger may still be exiting when the third step looks: it fails once it is gone.
    assert len(results) in (3, 4)
