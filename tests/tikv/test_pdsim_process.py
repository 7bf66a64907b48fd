from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sim() -> Iterator[dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "subjects.tikv.pdsim", "--pd-port", "0", "--pd-port", "0", "--pd-port", "0",
           "--store-port", "0", "--store-port", "0", "--store-port", "0", "--tick", "0.1", "--disconnect-after", "2",
           "--advertise-local"]  # fmt: skip
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


def refused(http: httpx.Client, url: str) -> bool:
    try:
        http.get(url, timeout=1)
    except httpx.TransportError:
        return True  # the listener is closed: connections are refused (or reset while it closes)
    return False


def wait(condition: Callable[[], bool], seconds: float = 8.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_process_serves_pd_and_each_tikv_and_fails_over(sim: dict[str, object]) -> None:
    pd: dict[str, str] = sim["pd"]  # type: ignore[assignment]
    tikv: dict[str, str] = sim["tikv"]  # type: ignore[assignment]
    assert list(tikv) == ["tikv1", "tikv2", "tikv3"]
    # A new connection for every request (as httpx.get makes), one TLS context for all of them.
    with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as http:
        stores = http.get(pd["pd2"] + "/pd/api/v1/stores").json()
        assert stores["count"] == 3 and {s["store"]["state_name"] for s in stores["stores"]} == {"Up"}
        # Stores advertise their deployment names; the lab's Prometheus gives each target that `instance`.
        assert [s["store"]["status_address"] for s in stores["stores"]] == ["tikv1:20180", "tikv2:20180", "tikv3:20180"]
        assert "tikv_store_size_bytes" in http.get(tikv["tikv3"] + "/metrics").text
        assert "etcd_server_is_leader 1.0" in http.get(pd["pd1"] + "/metrics").text

        # A stopped store is a dead process: its status port refuses connections, PD's window runs.
        http.post(pd["pd1"] + "/sim/chaos/store_down", json={"store_id": 3}).raise_for_status()
        wait(lambda: refused(http, tikv["tikv3"] + "/metrics"))
        wait(lambda: http.get(pd["pd1"] + "/pd/api/v1/store/3").json()["store"]["state_name"] == "Disconnected")
        http.post(pd["pd1"] + "/sim/chaos/store_up", json={"store_id": 3}).raise_for_status()
        wait(lambda: not refused(http, tikv["tikv3"] + "/metrics"))

        assert http.post(pd["pd2"] + "/sim/pd/pd1/down").json()["pd_leader"] == "pd2"
        wait(lambda: refused(http, pd["pd1"] + "/pd/api/v1/ping"))
        assert http.get(pd["pd3"] + "/pd/api/v1/leader").json()["name"] == "pd2"
        http.post(pd["pd2"] + "/sim/pd/pd1/up").raise_for_status()
        wait(lambda: not refused(http, pd["pd1"] + "/pd/api/v1/ping"))

    proc: subprocess.Popen[str] = sim["proc"]  # type: ignore[assignment]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_bad_arguments_exit_with_a_message() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args, message in (
        (["--pd-port", "70000"], "port 70000 is out of range"),
        (["--pd-port", "0", "--store-port", "0", "--stores", "3"], "--stores 3 needs one --store-port per store, got 1"),
    ):
        done = subprocess.run([sys.executable, "-m", "subjects.tikv.pdsim", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 2
        assert message in done.stderr and "Traceback" not in done.stderr
