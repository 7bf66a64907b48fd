"""Params stay in their path segment, the audit line is the request sent, `format` is enforced.

The `..` finding of issue 20 chained on a real limiter node: a `reset_key` whose policy is `..`
became, after the HTTP client removed the dot segment, a request to another path of the
management API. Here the same chain runs against a real node: every dotted form is refused by
the gate, and whatever the executor does send leaves the node's other resources alone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.act import TargetExecutor, render_request
from engine.act.gate import ActionGate, _Refused
from engine.config.models import Action
from engine.config.validate import load_config
from engine.errors import ActionRefused
from tests.json_server import JsonServer
from tests.ratelimiter.nodes import NodeGroup

ROOT = Path(__file__).resolve().parents[2]
RESET = Action.model_validate({
    "name": "reset_key", "description": "d",
    "params": {"type": "object", "properties": {"policy": {"type": "string"}, "key": {"type": "string"}}},
    "http": {"target": "api", "method": "DELETE", "path": "/v1/keys/{policy}/{key}", "query": {"why": "{why}"}},
})
DOTTED = [".", "..", "%2e", "%2E%2e", "%2e.", ".%2E", "%252e%252E", "%25252e."]


def _dot_decoded(value: str) -> bool:
    """Independent of the renderer: what a server that decodes repeatedly would see."""
    from urllib.parse import unquote

    seen = [value]
    while unquote(seen[-1]) != seen[-1]:
        seen.append(unquote(seen[-1]))
    return any(v in (".", "..") for v in seen)


@settings(max_examples=300, deadline=None)
@given(policy=st.one_of(st.sampled_from(DOTTED), st.text(min_size=1, max_size=12)), key=st.text(min_size=1, max_size=20))
def test_a_path_param_never_changes_the_path_httpx_sends(policy: str, key: str) -> None:
    """Either the gate refuses (exactly for the dotted forms) or httpx sends the rendered path unchanged."""
    try:
        request = render_request(RESET, {"policy": policy, "key": key})
    except ActionRefused as refused:
        assert refused.gate == "params" and "dot segment" in refused.reason
        assert _dot_decoded(policy) or _dot_decoded(key)
        return
    assert not _dot_decoded(policy) and not _dot_decoded(key)
    sent = httpx.URL("http://127.0.0.1:1" + request.request_target).raw_path.decode()
    assert sent == request.request_target and request.line == f"DELETE {sent}"
    assert sent.split("/")[:3] == ["", "v1", "keys"] and len(sent.split("/")) == 5


@pytest.mark.parametrize("dotted", DOTTED)
def test_every_dotted_form_is_refused_by_the_gate(dotted: str) -> None:
    with pytest.raises(_Refused) as refused:
        ActionGate._params(RESET, {"policy": dotted, "key": "policies%2Fvictim"})
    assert refused.value.refusal.gate == "params" and "dot segment" in refused.value.refusal.reason


def test_json_schema_format_is_enforced_on_params() -> None:
    action = Action.model_validate({
        "name": "drop_session", "description": "d",
        "params": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}},
        "http": {"target": "api", "method": "DELETE", "path": "/v1/sessions/{id}"},
    })
    with pytest.raises(_Refused) as refused:
        ActionGate._params(action, {"id": "not-a-uuid"})
    assert refused.value.refusal.gate == "params" and "uuid" in refused.value.refusal.reason
    assert ActionGate._params(action, {"id": "0b7e0c5e-8f7a-4c1e-9d2a-3f1e2d4c5b6a"}).path == "/v1/sessions/0b7e0c5e-8f7a-4c1e-9d2a-3f1e2d4c5b6a"


def _send(loaded: Any, requests: list[Any]) -> list[Any]:
    async def run() -> list[Any]:
        executor = TargetExecutor(loaded)
        try:
            return [await executor.execute(r) for r in requests]
        finally:
            await executor.aclose()

    return asyncio.run(run())


def test_the_audit_line_is_exactly_the_request_line_the_server_received(tmp_path: Path) -> None:
    awkward = [{"policy": "a b", "key": "x/../y", "why": "50% & more"}, {"policy": "p", "key": "..%2Fnodes"},
               {"policy": "é", "key": "?#", "why": "a=b"}]
    with JsonServer() as server:
        # the endpoint carries a base path and a query string of its own
        config = tmp_path / "opctl.yaml"
        config.write_text(
            "version: 1\nsubject: {name: x}\n"
            f"targets: {{api: {{url: '{server.url}/base?tenant=t1'}}}}\n"
            "observations: {o: {http: {target: api, path: /v1/nodes}}}\n"
            "invariants: [{name: i, expr: 'true'}]\n"
            "actions:\n  - name: reset_key\n    description: d\n"
            "    params: {type: object, properties: {policy: {type: string}, key: {type: string}, why: {type: string}}}\n"
            "    http: {target: api, method: DELETE, path: '/v1/keys/{policy}/{key}', query: {why: '{why}'}}\n"
        )
        loaded = load_config(config)
        requests = [render_request(loaded.config.actions[0], params) for params in awkward]
        outcomes = _send(loaded, requests)
    assert all(o.status == "HTTP 404" for o in outcomes)  # the server answered each one
    received = [path for _, path, _, _ in server.requests]
    expected = []
    for request in requests:
        path, _, query = request.request_target.partition("?")
        expected.append("/base" + path + "?tenant=t1" + (f"&{query}" if query else ""))
    assert received == expected


def test_the_dotted_chain_on_a_real_limiter_node_never_reaches_another_path(redis_url: str, tmp_path: Path) -> None:
    token = "chain-token-5c1d"
    with NodeGroup(redis_url, count=1, env={"RATELIMITER_TOKEN": token}, workdir=tmp_path) as nodes:
        url = nodes[0].url
        auth = {"Authorization": f"Bearer {token}"}
        victim = httpx.put(f"{url}/v1/policies/victim", json={"limit": 5, "window_ms": 1000}, headers=auth)
        assert victim.status_code == 200, victim.text
        env = {"RATELIMITER_TOKEN": token, "REDIS_URL": redis_url, **{f"RATELIMITER_URL_{i}": url for i in (1, 2, 3)}}
        loaded = load_config(ROOT / "configs" / "ratelimiter.yaml", env=env)
        reset = loaded.config.action("reset_key")
        assert reset is not None
        for dotted in DOTTED:
            for params in ({"policy": dotted, "key": "policies/victim"}, {"policy": "default", "key": dotted}):
                with pytest.raises(_Refused):
                    ActionGate._params(reset, params)
        # what does pass the gate goes to the keys path and nowhere else
        passing = [{"policy": "x..", "key": "../policies/victim"}, {"policy": "...", "key": "..%2Fpolicies%2Fvictim"}]
        outcomes = _send(loaded, [ActionGate._params(reset, p) for p in passing])
        assert [o.ok for o in outcomes] == [False, False] and all("HTTP 4" in o.status for o in outcomes)
        policies = httpx.get(f"{url}/v1/policies", headers=auth).json()["policies"]
        assert "victim" in policies
