"""`opctl run` and the commands that read the store, on a real PostgreSQL, as a user runs them;
and what a bad `store:` URL looks like to that user (one line, password masked, exit 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.lab.postgres_server import PostgresServer
from engine.store import Store
from tests.json_server import JsonServer
from tests.ports import free_port
from tests.test_cli_run import CONFIG

ROOT = Path(__file__).resolve().parents[1]


def opctl(*args: str, store: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPCTL_STORE": store}
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=ROOT, timeout=60, env=env)


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    with JsonServer() as api:
        api.set("/v1/nodes", {"nodes": [{"id": "n1", "state": "down"}, {"id": "n2", "state": "up"}]})
        path = tmp_path / "demo.yaml"
        # test_cli_run's config, its store named by OPCTL_STORE; observations may take 10 s (a
        # busy machine must not turn the sample unknown: no ticket would open)
        text = CONFIG.format(api=api.url, hold="0s").replace("store: state.db", "store: ${OPCTL_STORE}")
        path.write_text(text.replace("timeout: 500ms", "timeout: 10s"))
        yield path


def test_run_on_postgres_opens_the_ticket_in_postgres(config: Path, postgres_url: str) -> None:
    ran = opctl("run", str(config), "--once", "--json", store=postgres_url)
    assert ran.returncode == 0, ran.stderr
    tick = json.loads(ran.stdout.splitlines()[-1])
    assert [t["key"] for t in tick["tickets_opened"]] == ["n1"], tick["observations"]
    # in the database, not in a file: the Store reads it back from PostgreSQL
    with Store(postgres_url) as store:
        (ticket,) = store.tickets(status="open")
        assert (ticket.invariant, ticket.entity_key, ticket.message) == ("node_up", "n1", "node n1 is down")
        assert [e.kind for e in store.events(ticket.id)] == ["firing", "incident"]  # waits group_wait
    # a second run continues it; the commands that read the store find it by the config or --store
    assert opctl("run", str(config), "--once", "--json", store=postgres_url).returncode == 0
    with Store(postgres_url) as store:
        # the acting path wrote through it too: the incident, its (runbook-less) diagnosis, the outcome
        assert [e.kind for e in store.events(ticket.id)] == ["firing", "incident", "incident_opened", "diagnosis", "no_action"]
    listed = opctl("tickets", "list", str(config), "--json", store=postgres_url)
    assert [(t["id"], t["key"], t["status"]) for t in json.loads(listed.stdout)] == [(ticket.id, "n1", "open")]
    shown = opctl("tickets", "show", "--store", postgres_url, str(ticket.id), "--json", store="unused.db")
    assert json.loads(shown.stdout)["occurrences"] == 2
    # the switches live there too, and what the commands print names it with the password masked
    assert opctl("kill", "--store", postgres_url, "--reason", "drill", store="unused.db").returncode == 0
    assert opctl("mode", str(config), "approve", store=postgres_url).returncode == 0
    shown_mode = opctl("mode", "--store", postgres_url, "--json", store="unused.db")
    password = postgres_url.split(":")[2].split("@")[0]
    assert json.loads(shown_mode.stdout)["store"] == postgres_url.replace(password, "[REDACTED]")
    assert password not in shown_mode.stdout + shown_mode.stderr
    with Store(postgres_url) as store:
        assert store.killed() is not None and store.mode_override() == "approve"
    assert not list(config.parent.glob("*.db")) and not (config.parent / ".opctl").exists()


BAD = {
    "unknown scheme": ("mysql://opctl:hunter22@127.0.0.1/opctl", "unknown scheme 'mysql'"),
    "unreachable host": ("postgresql://opctl:hunter22@127.0.0.1:{port}/opctl", "cannot connect"),
    "wrong password": ("{wrong}", "password authentication failed"),
}


@pytest.mark.parametrize("problem", sorted(BAD))
def test_bad_store_urls_are_one_line_and_exit_1(problem: str, config: Path, postgres_server: PostgresServer) -> None:
    template, expected = BAD[problem]
    url = template.format(port=free_port(), wrong=postgres_server.url(password="hunter22"))
    masked = url.replace("hunter22", "[REDACTED]")
    for args in (["run", str(config), "--once"], ["tickets", "list", str(config)], ["actions", "list", "--store", url], ["mode", "--store", url]):
        result = opctl(*args, store=url)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr  # one line
        assert expected in result.stderr and masked in result.stderr, result.stderr
        assert "hunter22" not in result.stderr + result.stdout and "Traceback" not in result.stderr
