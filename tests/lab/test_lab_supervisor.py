"""The supervisor on a small lab of real processes: redis-server and tiny HTTP processes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from engine.lab import supervisor
from engine.lab.models import LabError
from engine.lab.spec import load_lab
from tests.lab.lab_support import small_lab, write_small_lab


def test_up_status_down(tmp_path: Path) -> None:
    spec = small_lab(tmp_path)
    try:
        status = supervisor.up(spec)
        assert status.healthy and [p.name for p in status.processes] == ["store", "web", "logger"]
        web = status.process("web")
        answer = httpx.get(f"{web.endpoint}/health").json()
        assert answer["pid"] == web.pid and answer["env"] == "lab-wide"  # lab env reached the process
        recorded = json.loads(spec.lab_json.read_text())["processes"]
        assert [r["name"] for r in recorded] == ["store", "web", "logger"]
        assert recorded[1]["command"] == [sys.executable, "tiny_http.py", web.endpoint.rsplit(":", 1)[1]]
        assert all(r["proc_start"] > 0 and r["started_at"] > 0 for r in recorded)
        assert "tiny listening" in Path(status.process("logger").log).read_text()
        assert status.as_json()["exports"]["WEB_URL"] == web.endpoint
        assert status.as_json()["endpoints"]["store"] == status.process("store").endpoint
    finally:
        stopped = supervisor.down(spec)
    assert stopped == ["logger", "web", "store"]
    assert not spec.lab_json.exists()
    after = supervisor.status(spec)
    assert not after.running and all(p.pid is None for p in after.processes)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{web.endpoint}/health")
    assert supervisor.down(spec) == []  # down twice is harmless


def test_up_refuses_while_running_then_starts_again(tmp_path: Path) -> None:
    spec = small_lab(tmp_path)
    supervisor.up(spec)
    try:
        with pytest.raises(LabError, match=r"already running \(store \(pid \d+\)"):
            supervisor.up(spec)
    finally:
        supervisor.down(spec)
    try:
        assert supervisor.up(spec).healthy  # no leftovers: same ports, same state dir
    finally:
        supervisor.down(spec)


def test_reused_pid_is_not_killed(tmp_path: Path) -> None:
    spec = small_lab(tmp_path)
    supervisor.up(spec)
    supervisor.down(spec)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # lab.json claims the stranger's pid for `web`, with the command lab.yaml would run.
        spec.state_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "name": "web", "pid": stranger.pid, "command": supervisor.command_of(spec, spec.process("web")),
            "started_at": 0.0, "proc_start": 1, "log": "x", "endpoint": None, "env": {},
        }
        spec.lab_json.write_text(json.dumps({"lab": "small", "processes": [record]}))
        assert not supervisor.status(spec).process("web").running
        assert supervisor.down(spec) == []
        assert stranger.poll() is None
        # Even with the right start time, a different command line is not ours.
        record["proc_start"] = supervisor._proc_stat(stranger.pid)[1]  # type: ignore[index]
        spec.lab_json.write_text(json.dumps({"lab": "small", "processes": [record]}))
        assert supervisor.down(spec) == []
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_port_taken_fails_fast_naming_port_and_process(tmp_path: Path) -> None:
    path, env = write_small_lab(tmp_path)
    spec = load_lab(path, env)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(env["WEB_PORT"])))
        squatter.listen()
        with pytest.raises(LabError) as caught:
            supervisor.up(spec)
    message = str(caught.value)
    assert f"port {env['WEB_PORT']} of process 'web' is already in use by pid" in message
    assert not supervisor.status(spec).running  # nothing was started
    assert not spec.lab_json.exists()


def test_process_exiting_during_start_fails_with_its_log(tmp_path: Path) -> None:
    spec = small_lab(
        tmp_path,
        '  - name: broken\n    command: ["{python}", tiny_http.py, "1", --exit-now, "boom: no config here"]\n'
        "    after: [logger]\n    ready: {log: never, timeout: 10s}\n",
    )
    with pytest.raises(LabError) as caught:
        supervisor.up(spec)
    message = str(caught.value)
    assert "process 'broken' exited with code 3 while starting" in message
    assert "boom: no config here" in message
    # What had started is stopped again and nothing is recorded.
    assert not supervisor.status(spec).running
    assert not spec.lab_json.exists()


def test_not_ready_in_time_names_the_probe(tmp_path: Path) -> None:
    spec = small_lab(
        tmp_path,
        '  - name: mute\n    command: ["{python}", -c, "import time; time.sleep(30)"]\n'
        "    ready: {log: never-printed, timeout: 300ms}\n",
    )
    with pytest.raises(LabError, match=r"process 'mute' not ready after 0.3s \(no log line matched 'never-printed'\)"):
        supervisor.up(spec)
    assert not supervisor.status(spec).running


def test_restart_with_extra_env_updates_the_record(tmp_path: Path) -> None:
    spec = small_lab(tmp_path)
    supervisor.up(spec)
    try:
        old = supervisor.running_record(spec, "web")
        assert old is not None
        new = supervisor.restart_process(spec, "web", {"TINY_ECHO": "changed"})
        assert new.pid != old.pid and not supervisor.owns(old)
        assert httpx.get(f"{new.endpoint}/health").json()["env"] == "changed"
        assert supervisor.running_record(spec, "web") == new
    finally:
        supervisor.down(spec)


def test_damaged_lab_json_is_a_clear_error(tmp_path: Path) -> None:
    spec = small_lab(tmp_path)
    spec.state_dir.mkdir(parents=True)
    spec.lab_json.write_text("{not json")
    with pytest.raises(LabError, match="lab.json is damaged"):
        supervisor.status(spec)


def test_start_waves_follow_after(tmp_path: Path) -> None:
    spec = small_lab(
        tmp_path,
        '  - name: a\n    command: [x]\n    after: [store]\n  - name: b\n    command: [x]\n    after: [store]\n'
        "  - name: c\n    command: [x]\n",
    )
    waves = [[p.name for p in wave] for wave in supervisor.start_waves(spec)]
    assert waves == [["store"], ["web"], ["logger", "a", "b"], ["c"]]
