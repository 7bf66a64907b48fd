"""Rendering and executing declared requests: encoding that no param can escape, real Redis,
real loopback HTTP servers in failover and fanout modes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import unquote

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.act import ActionRequest, TargetExecutor, render_request
from engine.config.models import Action
from engine.errors import ActionRefused
from tests.ports import free_port
from tests.act.act_support import write_config
from tests.json_server import JsonServer

RESTART = Action.model_validate({
    "name": "restart_node", "description": "d",
    "http": {"target": "api", "method": "POST", "path": "/v1/nodes/{node_id}/restart", "query": {"why": "{why}"},
             "headers": {"X-Reason": "{why}"}, "body": {"node": "{node_id}", "count": "{count}", "note": "for {node_id}"}},
})


@settings(max_examples=200, deadline=None)
@given(node_id=st.text(min_size=1, max_size=40).filter(lambda t: unquote(unquote(t)) not in (".", "..") and unquote(t) not in (".", "..")))
def test_a_path_param_is_always_one_encoded_segment(node_id: str) -> None:
    request = render_request(RESTART, {"node_id": node_id})
    prefix, segment, suffix = request.path.split("/")[:3], request.path.split("/")[3:-1], request.path.split("/")[-1]  # type: ignore[union-attr]
    assert prefix == ["", "v1", "nodes"] and suffix == "restart" and len(segment) == 1
    assert unquote(segment[0]) == node_id and "?" not in request.path and "#" not in request.path  # type: ignore[operator]


def test_typed_body_values_dropped_absent_params_and_header_injection() -> None:
    request = render_request(RESTART, {"node_id": "n2", "count": 3})
    assert request.body == {"node": "n2", "count": 3, "note": "for n2"} and request.query == {} and request.headers == {}
    with pytest.raises(ActionRefused, match="line break"):
        render_request(RESTART, {"node_id": "n2", "why": "x\r\nX-Evil: 1"})
    with pytest.raises(ActionRefused, match="needs param 'node_id'"):
        render_request(RESTART, {})


def test_redis_commands_stay_allowed_writes() -> None:
    # validate refuses a `{param}` where the command name goes; the renderer checks the result too
    sneaky = Action.model_validate({"name": "a", "description": "d", "redis": {"target": "r", "command": ["{cmd}", "k:1", "v"], "key_prefix": "k:"}})
    with pytest.raises(ActionRefused, match="FLUSHALL"):
        render_request(sneaky, {"cmd": "FLUSHALL"})
    assert render_request(sneaky, {"cmd": "set"}).command == ("set", "k:1", "v")
    config_set = Action.model_validate({"name": "a", "description": "d", "redis": {"target": "r", "command": ["CONFIG", "SET", "{p}", "{v}"]}})
    with pytest.raises(ActionRefused, match="CONFIG SET 'dir' is not allowed"):
        render_request(config_set, {"p": "dir", "v": "/root/.ssh"})
    assert render_request(config_set, {"p": "maxmemory", "v": "1mb"}).command == ("CONFIG", "SET", "maxmemory", "1mb")
    keyed = Action.model_validate({"name": "a", "description": "d", "redis": {"target": "r", "command": ["DEL", "flags:{k}", "{other}"], "key_prefix": "flags:"}})
    with pytest.raises(ActionRefused, match="does not start with the action's key_prefix"):
        render_request(keyed, {"k": "a", "other": "sessions:1"})


def _loaded(tmp_path: Path, targets: dict, actions: list) -> object:  # type: ignore[type-arg]
    data = {
        "version": 1, "subject": {"name": "x"}, "targets": targets,
        "observations": {"o": {"http": {"target": next(iter(targets)), "path": "/v1/nodes"}}} if "api" in targets
        else {"o": {"redis": {"target": "r", "command": ["PING"]}}},
        "invariants": [{"name": "i", "expr": "true"}], "actions": actions, "store": "s.db",
    }
    return write_config(tmp_path, data)


def test_redis_executor_runs_the_declared_write(tmp_path: Path, redis_url: str) -> None:
    action = {"name": "set_flag", "description": "d", "params": {"type": "object", "properties": {"v": {"type": "string"}}},
              "redis": {"target": "r", "command": ["SET", "opctl:flag", "{v}"], "key_prefix": "opctl:"}}
    loaded = _loaded(tmp_path, {"r": {"url": redis_url}}, [action])
    executor = TargetExecutor(loaded)  # type: ignore[arg-type]
    request = render_request(loaded.config.actions[0], {"v": "on"})  # type: ignore[attr-defined]
    outcome = asyncio.run(executor.execute(request))
    assert outcome.ok and outcome.status == "OK" and outcome.response == "true"
    assert redis.Redis.from_url(redis_url).get("opctl:flag") == b"on"


def test_http_failover_uses_the_first_endpoint_that_answers_and_fanout_records_every_endpoint(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with JsonServer() as a, JsonServer() as b:
        a.set("/v1/drain", {"ok": "a"})
        b.set("/v1/drain", {"ok": "b"}, status=503)
        act = [{"name": "drain", "description": "d", "http": {"target": "api", "method": "POST", "path": "/v1/drain"}}]
        failover = _loaded(tmp_path, {"api": {"urls": [dead, a.url, b.url], "mode": "failover"}}, act)
        request = ActionRequest("drain", "http", "api", method="POST", path="/v1/drain")

        async def both() -> tuple:  # type: ignore[type-arg]
            one = TargetExecutor(failover)  # type: ignore[arg-type]
            try:
                first = await one.execute(request)
            finally:
                await one.aclose()
            fan = TargetExecutor(_loaded(tmp_path, {"api": {"urls": [a.url, b.url], "mode": "fanout"}}, act))  # type: ignore[arg-type]
            try:
                return first, await fan.execute(request)
            finally:
                await fan.aclose()

        first, fanned = asyncio.run(both())
        assert first.ok and [r.answered for r in first.results] == [False, True] and first.status == "HTTP 200"
        assert not fanned.ok and [r.status for r in fanned.results] == [200, 503]
        assert fanned.status == "1 of 2 endpoints succeeded"
        assert [(m, p) for m, p, _, _ in a.requests] == [("POST", "/v1/drain"), ("POST", "/v1/drain")]
        assert [(m, p) for m, p, _, _ in b.requests] == [("POST", "/v1/drain")]
