"""The acting CLI as users run it: real `opctl run` processes, approvals and the kill switch from
other processes, and the read-only commands (actions, prompt, tickets show)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.store import Store
from tests.act.act_support import INJECTION, SECRET, api, config_data, nodes
from tests.json_server import JsonServer
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "API_TOKEN": SECRET}


def opctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=ROOT, timeout=60, env=ENV)


def write(tmp_path: Path, server: JsonServer, **overrides: Any) -> Path:
    data = config_data(server.url, diagnosis={"provider": "runbook"}, interval="200ms", **overrides)
    path = tmp_path / "opctl.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def deletes(server: JsonServer) -> list[str]:
    return [p for m, p, _, _ in server.requests if m == "DELETE"]


def proposals(db: Path, status: str | None = None) -> list[Any]:
    if not db.exists():
        return []
    with Store(db) as store:
        return store.proposals(status=status)


@pytest.fixture
def server() -> Iterator[JsonServer]:
    yield from api()


@pytest.fixture
def running(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    procs: list[subprocess.Popen[str]] = []

    def start(config: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "engine", "run", str(config), "--json"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.communicate(timeout=30)  # drains its output: an engine blocked on a full pipe cannot stop


@pytest.mark.slow
def test_approve_from_another_process_executes_on_the_next_tick(tmp_path: Path, server: JsonServer, running) -> None:  # type: ignore[no-untyped-def]
    config = write(tmp_path, server, mode="approve")
    db = tmp_path / "state.db"
    running(config)
    [waiting] = wait_for(lambda: proposals(db, "awaiting_approval"))
    seen = len(server.requests)
    wait_for(lambda: len(server.requests) >= seen + 3)  # three more ticks observed: nothing runs without approval
    assert deletes(server) == []
    listed = opctl("actions", "list", str(config), "--status", "pending", "--json")
    assert listed.returncode == 0 and [p["id"] for p in json.loads(listed.stdout)] == [waiting.id]
    approved = opctl("actions", "approve", str(config), str(waiting.id), "--reason", "looked at it")
    assert approved.returncode == 0, approved.stderr
    wait_for(lambda: deletes(server))
    # the server saw the request before the engine recorded its outcome: wait for the record
    [done] = wait_for(lambda: [p for p in proposals(db) if p.id == waiting.id and p.status not in ("approved", "executing")])
    assert deletes(server) == ["/v1/nodes/n2"]
    assert done.status == "succeeded" and done.decided_by and done.decided_by.startswith("cli:")
    shown = opctl("tickets", "show", str(config), str(waiting.ticket_id), "--json")
    kinds = [e["kind"] for e in json.loads(shown.stdout)["events"]]
    assert kinds[:6] == ["firing", "incident", "incident_opened", "diagnosis", "awaiting_approval", "approved"] and "succeeded" in kinds
    again = opctl("actions", "approve", str(config), str(waiting.id))
    assert again.returncode == 1 and "error: cannot approve proposal" in again.stderr and "Traceback" not in again.stderr


@pytest.mark.slow
def test_kill_from_another_process_stops_acting_within_a_tick_and_resume_restores_it(  # type: ignore[no-untyped-def]
    tmp_path: Path, server: JsonServer, running
) -> None:
    server.set("/v1/nodes", nodes())
    config = write(tmp_path, server, mode="execute")
    db = tmp_path / "state.db"
    proc = running(config)
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    assert first["killed"] is False
    killed = opctl("kill", str(config), "--reason", "incident 42")
    assert killed.returncode == 0 and "kill switch is ON" in killed.stdout
    wait_for(lambda: json.loads(proc.stdout.readline())["killed"])  # type: ignore[union-attr]
    server.set("/v1/nodes", nodes("n2"))  # a node dies while acting is stopped
    [refusal] = wait_for(lambda: proposals(db, "refused"))
    assert refusal.gate == "kill_switch" and "cli:" in (refusal.detail or "")
    seen = len(server.requests)
    wait_for(lambda: len(server.requests) >= seen + 3)  # three more ticks, still killed: nothing runs
    assert deletes(server) == []
    resumed = opctl("resume", str(config))
    assert resumed.returncode == 0 and "1 ticket(s)" in resumed.stdout
    wait_for(lambda: deletes(server))
    assert deletes(server) == ["/v1/nodes/n2"]


@pytest.mark.slow
def test_prompt_mode_and_show_commands(tmp_path: Path, server: JsonServer) -> None:
    server.set("/v1/nodes", nodes(INJECTION))
    config = write(tmp_path, server, mode="observe")
    ran = subprocess.run([sys.executable, "-m", "engine", "run", str(config), "--once", "--json"], capture_output=True,
                         text=True, cwd=ROOT, env=ENV, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["actions"][0]["status"] == "proposed"
    prompt = opctl("prompt", str(config), "1")
    assert prompt.returncode == 0 and INJECTION in prompt.stdout and SECRET not in prompt.stdout
    assert "===== system =====" in prompt.stdout and "deregister_node" in prompt.stdout
    shown = opctl("tickets", "show", str(config), "1")
    assert shown.returncode == 0 and "Diagnosis (runbook)" in shown.stdout and "Proposals" in shown.stdout
    action_shown = opctl("actions", "show", str(config), "1")
    assert action_shown.returncode == 0 and "proposed" in action_shown.stdout
    assert opctl("mode", str(config), "execute").stdout.strip() == (
        "mode is execute (overrides the config's observe until `opctl mode --clear`)"
    )
    missing = opctl("actions", "show", str(config), "99")
    assert missing.returncode == 1 and "there is no proposal #99" in missing.stderr
    not_killed = opctl("resume", str(config))
    assert not_killed.returncode == 1 and "not on" in not_killed.stderr
