from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sim() -> Iterator[dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "subjects.tikv.pdsim", "--pd-port", "0", "--pd-port", "0", "--pd-port", "0",
           "--prom-port", "0", "--tick", "0.1", "--speed", "10"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("pdsim ready "), (line, proc.stderr.read() if proc.stderr else "")
        ready = json.loads(line.removeprefix("pdsim ready "))
        yield {"proc": proc, **ready}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


def test_process_serves_pd_and_prometheus_and_fails_over(sim: dict[str, object]) -> None:
    pd: dict[str, str] = sim["pd"]  # type: ignore[assignment]
    prom = str(sim["prometheus"])
    # A new connection for every request (as httpx.get makes), one TLS context for all of them.
    with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as http:
        stores = http.get(pd["pd2"] + "/pd/api/v1/stores").json()
        assert stores["count"] == 3 and {s["store"]["state_name"] for s in stores["stores"]} == {"Up"}
        http.post(pd["pd1"] + "/sim/chaos/store_down", json={"store_id": 3}).raise_for_status()
        # 10x speed: PD sees store 3 disconnected after 20 simulated seconds (~2 s real).
        deadline = time.monotonic() + 8
        while http.get(pd["pd1"] + "/pd/api/v1/store/3").json()["store"]["state_name"] != "Disconnected":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        up = http.get(prom + "/api/v1/query", params={"query": 'up{job="tikv"} == 0'}).json()
        assert [r["metric"]["instance"] for r in up["data"]["result"]] == ["tikv3:20180"]

        assert http.post(pd["pd2"] + "/sim/pd/pd1/down").json()["pd_leader"] == "pd2"
        deadline = time.monotonic() + 5
        while True:
            try:
                http.get(pd["pd1"] + "/pd/api/v1/ping", timeout=1)
            except httpx.TransportError:
                break  # the listener is closed: connections are refused (or reset while it closes)
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert http.get(pd["pd3"] + "/pd/api/v1/leader").json()["name"] == "pd2"
        http.post(pd["pd2"] + "/sim/pd/pd1/up").raise_for_status()
        deadline = time.monotonic() + 5
        while True:
            try:
                if http.get(pd["pd1"] + "/pd/api/v1/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass  # refused, or reset while the listener reopens
            assert time.monotonic() < deadline
            time.sleep(0.05)

    proc: subprocess.Popen[str] = sim["proc"]  # type: ignore[assignment]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_bad_arguments_exit_with_a_message() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "subjects.tikv.pdsim", "--pd-port", "70000", "--prom-port", "0"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "port 70000 is out of range" in done.stderr and "Traceback" not in done.stderr
