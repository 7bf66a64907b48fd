"""The console's JSON API, served for real by `opctl serve` over a store a real Monitor filled:
every endpoint refuses a missing or wrong token (401), every write refuses a viewer (403) and
takes an approver's (2xx), recording the token's name as the actor."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.store import Store
from tests.act.act_support import SECRET
from tests.json_server import JsonServer
from tests.serve.serve_support import APPROVER, PAYLOAD, ROOT, VIEWER, Console, filled_store

pytestmark = pytest.mark.slow

READS = [
    ("GET", "/api/v1/status"), ("GET", "/api/v1/whoami"), ("GET", "/api/v1/invariants"), ("GET", "/api/v1/incidents"),
    ("GET", "/api/v1/incidents/1"), ("GET", "/api/v1/tickets"),
    ("GET", "/api/v1/tickets/1"), ("GET", "/api/v1/tickets/1/prompt"), ("GET", "/api/v1/events"),
    ("GET", "/api/v1/proposals"), ("GET", "/api/v1/kill"), ("GET", "/api/v1/mode"), ("GET", "/api/v1/silences"),
]  # fmt: skip
SILENCE = {"matchers": [{"name": "key", "value": "n9"}], "duration_s": 600, "comment": "maintenance"}
WRITES = [
    ("POST", "/api/v1/proposals/1/approve", {"comment": "ok"}), ("POST", "/api/v1/proposals/2/reject", {"comment": "no"}),
    ("POST", "/api/v1/kill", {"comment": "stop"}), ("POST", "/api/v1/resume", {"comment": "go"}),
    ("PUT", "/api/v1/mode", {"mode": "observe"}), ("POST", "/api/v1/silences", SILENCE), ("DELETE", "/api/v1/silences/1", None),
]  # fmt: skip
STREAM = ("GET", "/api/v1/stream")


def _serve(tmp_path: Path) -> Iterator[tuple[Console, Path]]:
    with JsonServer() as server:
        server.set("/v1/nodes/n2", {"deleted": "n2"})
        config = filled_store(tmp_path, server)
        console = Console.start(config)
        try:
            yield console, tmp_path / "state.db"
        finally:
            console.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Console, Path]]:
    """Shared by the tests that write nothing."""
    yield from _serve(tmp_path_factory.mktemp("served"))


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[tuple[Console, Path]]:
    """A console of its own, for a test that writes."""
    yield from _serve(tmp_path)


def test_the_openapi_document_lists_exactly_the_endpoints_tested(served: tuple[Console, Path]) -> None:
    console, _ = served
    spec = console.call("GET", "/api/v1/openapi.json", token=None).json()
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    tested = {(m, p.replace("/1/", "/{ticket_id}/").replace("tickets/1", "tickets/{ticket_id}")
                .replace("incidents/1", "incidents/{incident_id}")) for m, p in READS}  # fmt: skip
    tested |= {(m, p.replace("proposals/1", "proposals/{proposal_id}").replace("proposals/2", "proposals/{proposal_id}")
                .replace("silences/1", "silences/{silence_id}")) for m, p, _ in WRITES}  # fmt: skip
    assert documented == tested | {STREAM}
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789", f"{APPROVER}x"], ids=["none", "wrong", "longer"])
def test_every_endpoint_without_a_valid_token_is_401(served: tuple[Console, Path], token: str | None) -> None:
    console, db = served
    before = Store(db).last_event_id()
    for method, path, *body in [*READS, *WRITES, STREAM]:
        reply = console.call(method, path, token=token, json=body[0] if body else None)
        assert reply.status_code == 401, (method, path, reply.text)
        assert reply.headers["www-authenticate"] == "Bearer"
    assert Store(db).last_event_id() == before


def test_a_viewer_reads_everything_and_writes_nothing(served: tuple[Console, Path]) -> None:
    console, db = served
    for method, path in READS:
        assert console.call(method, path, token=VIEWER).status_code == 200, path
    before = Store(db).last_event_id()
    for method, path, body in WRITES:
        reply = console.call(method, path, token=VIEWER, json=body)
        assert reply.status_code == 403, (method, path, reply.text)
        assert "viewer" in reply.json()["detail"]
    assert Store(db).last_event_id() == before
    assert console.call("GET", "/api/v1/whoami", token=VIEWER).json() == {"name": "vic", "role": "viewer"}


def test_an_approvers_writes_are_store_writes_recorded_under_its_name(fresh: tuple[Console, Path]) -> None:
    console, db = fresh
    for method, path, body in WRITES:
        reply = console.call(method, path, json=body)
        assert reply.status_code in (200, 201), (method, path, reply.text)
    with Store(db) as store:
        approved, rejected = store.proposal(1), store.proposal(2)
        # approved, then cancelled by the kill switch that followed
        assert approved is not None and (approved.status, approved.decided_by) == ("cancelled", "console:ann")
        assert rejected is not None and (rejected.status, rejected.decided_by) == ("rejected", "console:ann")
        assert store.killed() is None and store.mode_override() == "observe"
        [silence] = store.silences()
        assert silence.created_by == "console:ann" and silence.state(silence.ends_at) == "expired"
        written = store.events(kinds=("approved", "rejected", "kill_switch", "mode", "silence_added", "silence_expired"))
        assert {e.actor for e in written} == {"console:ann"} and len(written) == 7
        assert [e.kind for e in written][:2] == ["approved", "rejected"]
        reasons = [e.data.get("reason") for e in written if e.kind in ("approved", "rejected")]
        assert reasons == ["ok", "no"]
    again = console.call("POST", "/api/v1/proposals/1/approve", json={"comment": ""})
    assert again.status_code == 409 and "cancelled, not awaiting approval" in again.json()["detail"]


def test_a_ticket_shows_its_whole_timeline_redacted(served: tuple[Console, Path]) -> None:
    console, _ = served
    reply = console.call("GET", "/api/v1/tickets/2", token=VIEWER)
    assert reply.status_code == 200
    ticket = reply.json()
    assert ticket["key"] == "n3" and ticket["diagnosis"]["provider"] == "runbook"
    assert [p["action"] for p in ticket["proposals"]] == ["deregister_node"]
    assert {"firing", "diagnosis", "awaiting_approval"} <= {e["kind"] for e in ticket["events"]}
    assert all(e["text"] for e in ticket["events"] if e["kind"] in ("firing", "diagnosis"))
    text = json.dumps(ticket)
    assert SECRET not in text and "[REDACTED]" in text
    assert PAYLOAD.split(" token=")[0] in text  # the observed script, as data
    reply = console.call("GET", "/api/v1/tickets/2/prompt", token=VIEWER)
    assert reply.status_code == 200, reply.text
    prompt = reply.json()
    assert "n3" in prompt["user"] and SECRET not in json.dumps(prompt)


def test_an_incident_lists_its_tickets(served: tuple[Console, Path]) -> None:
    console, _ = served
    # the tests' config groups by invariant and key: one incident per dead node, newest first
    incidents = console.call("GET", "/api/v1/incidents", token=VIEWER).json()
    assert [(i["group_key"], [t["key"] for t in i["tickets"]], i["lead_ticket_id"]) for i in incidents] == [
        ("invariant=node_up,key=n3", ["n3"], 2), ("invariant=node_up,key=n2", ["n2"], 1)]
    assert all(i["resolved_at"] is None for i in incidents)
    assert console.call("GET", f"/api/v1/incidents/{incidents[0]['id']}", token=VIEWER).json() == incidents[0]


def test_unknown_records_are_404_and_bad_input_422(served: tuple[Console, Path]) -> None:
    console, _ = served
    for path in ("/api/v1/tickets/999", "/api/v1/tickets/999/prompt", "/api/v1/incidents/999"):
        assert console.call("GET", path).status_code == 404
    assert console.call("POST", "/api/v1/proposals/999/approve", json={}).status_code == 404
    assert console.call("DELETE", "/api/v1/silences/999").status_code == 404
    bad = {**SILENCE, "matchers": [{"name": "key", "value": "(", "regex": True}]}
    assert console.call("POST", "/api/v1/silences", json=bad).status_code == 422
    assert console.call("PUT", "/api/v1/mode", json={"mode": "yolo"}).status_code == 422


def test_every_response_carries_strict_security_headers(served: tuple[Console, Path]) -> None:
    console, _ = served
    for path in ("/", "/static/app.js", "/static/app.css", "/api/v1/status", "/api/v1/nope"):
        headers = console.call("GET", path).headers
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, path
        assert headers["x-content-type-options"] == "nosniff"
    assert console.call("GET", "/api/v1/status").headers["cache-control"] == "no-store"


def test_on_loopback_only_loopback_host_names_are_answered(served: tuple[Console, Path]) -> None:
    console, _ = served
    assert console.call("GET", "/api/v1/status", headers={"Host": "evil.example"}).status_code == 400
    port = console.url.rsplit(":", 1)[1]
    assert console.call("GET", "/api/v1/status", headers={"Host": f"localhost:{port}"}).status_code == 200


def test_the_stream_sends_a_change_when_the_log_grows(fresh: tuple[Console, Path]) -> None:
    console, db = fresh
    with console.http.stream("GET", f"{console.url}/api/v1/stream", headers={"Authorization": f"Bearer {VIEWER}"}) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        lines = reply.iter_lines()
        first = _next_change(lines)
        assert first == Store(db).last_event_id()
        assert console.call("POST", "/api/v1/kill", json={"comment": "stream"}).status_code == 200
        assert _next_change(lines) > first


def _next_change(lines: Iterator[str]) -> int:
    for line in lines:
        if line.startswith("data: "):
            return int(json.loads(line[6:])["last_event_id"])
    raise AssertionError("the stream ended")


def test_without_tokens_loopback_is_read_only(tmp_path: Path) -> None:
    with JsonServer() as server:
        config = filled_store(tmp_path, server)
        console = Console.start(config, tokens=None)
        try:
            assert console.call("GET", "/api/v1/tickets", token=None).status_code == 200
            refused = console.call("POST", "/api/v1/kill", token=None, json={})
            assert refused.status_code == 403 and "OPCTL_SERVE_TOKENS" in refused.json()["detail"]
        finally:
            console.stop()


@pytest.mark.parametrize(("env", "args", "message"), [
    ({}, ["--host", "0.0.0.0"], "refusing to listen on 0.0.0.0 without tokens"),
    ({"OPCTL_SERVE_TOKENS": "ann:short:approver"}, [], "entry 1 (ann): the token is shorter than 16"),
    ({"OPCTL_SERVE_TOKENS": f"ann:{APPROVER}:admin"}, [], "role 'admin' is not viewer or approver"),
    ({"OPCTL_SERVE_TOKENS": f"ann:{APPROVER}"}, [], "entry 1: write name:token:role"),
])  # fmt: skip
def test_serve_refuses_to_start_with_one_clear_message(tmp_path: Path, env: dict[str, str], args: list[str], message: str) -> None:
    config = ROOT / "configs" / "ratelimiter.yaml"
    result = subprocess.run([sys.executable, "-m", "engine", "serve", str(config), "--store", str(tmp_path / "s.db"), *args],
                            capture_output=True, text=True, cwd=ROOT, timeout=60,
                            env={**{k: v for k, v in __import__("os").environ.items() if k != "OPCTL_SERVE_TOKENS"}, **env})  # fmt: skip
    assert result.returncode == 1, result
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
