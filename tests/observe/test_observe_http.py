"""http observations against real servers on 127.0.0.1: values, select, auth, modes, timeouts."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from observe_support import LoopbackServer, Reply, SeenRequest, dead_url, http_server, json_reply, make_config, other_server  # noqa: F401 - fixtures
from engine.config.validate import LoadedConfig
from engine.errors import ConfigError
from engine.observe import ObservationResult, Observer

T = TypeVar("T")


def run_with(loaded: LoadedConfig, body: Callable[[Observer], Awaitable[T]], **kwargs: Any) -> T:
    async def main() -> T:
        observer = Observer(loaded, **kwargs)
        try:
            return await body(observer)
        finally:
            await observer.aclose()

    return asyncio.run(main())


def observe_once(loaded: LoadedConfig, **kwargs: Any) -> dict[str, ObservationResult]:
    return run_with(loaded, lambda o: o.observe_all(), **kwargs)


def test_changing_json_is_seen_on_each_tick(http_server: LoopbackServer) -> None:
    counter = itertools.count(1)
    http_server.routes["/v1/nodes"] = lambda _: json_reply({"nodes": [{"id": n, "up": True} for n in range(next(counter))]})
    loaded = make_config({"api": {"url": http_server.url}}, {"nodes": {"http": {"target": "api", "path": "/v1/nodes"}}})
    ticks = itertools.count(0.0, 0.25)  # injected clock: every reading is 0.25 s later

    async def two_ticks(observer: Observer) -> list[ObservationResult]:
        return [(await observer.observe_all())["nodes"], (await observer.observe_all())["nodes"]]

    first, second = run_with(loaded, two_ticks, clock=lambda: next(ticks))
    assert first == ObservationResult("nodes", True, {"nodes": [{"id": 0, "up": True}]}, None, 0.25, http_server.url)
    assert second.value == {"nodes": [{"id": 0, "up": True}, {"id": 1, "up": True}]}


def test_bearer_token_headers_and_query_are_sent(http_server: LoopbackServer) -> None:
    http_server.routes["/status"] = lambda _: json_reply({"ok": True})
    loaded = make_config(
        {"api": {"url": http_server.url + "/", "token": "tok-123", "headers": {"X-Team": "ops"}}},
        {"status": {"http": {"target": "api", "path": "status?a=1", "query": {"b": "2"}, "headers": {"X-Query": "yes"}}}},
    )
    result = observe_once(loaded)["status"]
    assert result.ok and result.value == {"ok": True}
    (request,) = http_server.seen
    assert request.headers["authorization"] == "Bearer tok-123"
    assert request.headers["x-team"] == "ops" and request.headers["x-query"] == "yes"
    assert request.path == "/status?a=1&b=2"


def test_no_authorization_header_without_token(http_server: LoopbackServer) -> None:
    http_server.routes["/"] = lambda _: json_reply(1)
    observe_once(make_config({"api": {"url": http_server.url}}, {"one": {"http": {"target": "api"}}}))
    assert "authorization" not in http_server.seen[0].headers


def test_select_projects_body_and_sees_headers_and_now(http_server: LoopbackServer) -> None:
    http_server.routes["/nodes"] = lambda _: json_reply({"nodes": [{"id": "a", "lag": 3}, {"id": "b", "lag": 12}]})
    loaded = make_config(
        {"api": {"url": http_server.url}},
        {
            "lagging": {"http": {"target": "api", "path": "/nodes"}, "select": "body.nodes.filter(n, n.lag > 10).map(n, n.id)"},
            "meta": {
                "http": {"target": "api", "path": "/nodes"},
                "select": "{'type': headers['content-type'], 'at': now, 'status': status}",
            },
        },
    )
    results = observe_once(loaded, wall_clock=lambda: 1700000000.5)
    assert results["lagging"].value == ["b"]
    assert results["meta"].value == {"type": "application/json", "at": 1700000000.5, "status": 200}


def test_status_is_data_when_select_uses_it(http_server: LoopbackServer) -> None:
    http_server.routes["/ready"] = lambda _: json_reply({"reason": "warming up"}, status=503)
    loaded = make_config(
        {"api": {"url": http_server.url}},
        {
            "ready": {"http": {"target": "api", "path": "/ready"}, "select": "{'ready': status == 200, 'why': body.reason}"},
            "raw": {"http": {"target": "api", "path": "/ready"}},
        },
    )
    results = observe_once(loaded)
    assert results["ready"].ok and results["ready"].value == {"ready": False, "why": "warming up"}
    raw = results["raw"]
    assert not raw.ok and raw.value is None
    assert raw.error == f'HTTP 503 from {http_server.url}/ready: {{"reason": "warming up"}}'


def test_select_error_is_an_observation_error(http_server: LoopbackServer) -> None:
    http_server.routes["/v1"] = lambda _: json_reply({"items": []})
    loaded = make_config({"api": {"url": http_server.url}}, {"nodes": {"http": {"target": "api", "path": "/v1"}, "select": "body.nodes"}})
    result = observe_once(loaded)["nodes"]
    assert not result.ok and result.value is None
    assert result.error is not None and result.error.startswith("select failed:") and "nodes" in result.error
    assert "\n" not in result.error


def test_text_body_is_text_and_bad_json_is_an_error(http_server: LoopbackServer) -> None:
    http_server.routes["/text"] = lambda _: Reply(200, b"all good\n", "text/plain")
    http_server.routes["/broken"] = lambda _: Reply(200, b'{"a": ', "application/json")
    loaded = make_config(
        {"api": {"url": http_server.url}},
        {"text": {"http": {"target": "api", "path": "/text"}}, "broken": {"http": {"target": "api", "path": "/broken"}}},
    )
    results = observe_once(loaded)
    assert results["text"].value == "all good\n"
    assert not results["broken"].ok and results["broken"].error.startswith(f"invalid JSON from {http_server.url}/broken")


def test_connection_refused_is_a_result_not_an_exception(dead_url: str) -> None:
    loaded = make_config({"api": {"url": dead_url}}, {"nodes": {"http": {"target": "api", "path": "/v1/nodes"}}})
    result = observe_once(loaded)["nodes"]
    assert not result.ok
    assert result.error == f"connection refused to {dead_url}/v1/nodes"
    assert result.endpoint_errors == ((dead_url, result.error),)


def test_fanout_with_one_dead_endpoint_is_tagged_and_ok(http_server: LoopbackServer, other_server: LoopbackServer, dead_url: str) -> None:
    http_server.routes["/health"] = lambda _: json_reply({"node": "a"})
    other_server.routes["/health"] = lambda _: json_reply({"node": "b"})
    urls = [http_server.url, dead_url, other_server.url]
    loaded = make_config({"nodes": {"urls": urls, "mode": "fanout"}}, {"health": {"http": {"target": "nodes", "path": "/health"}}})
    result = observe_once(loaded)["health"]
    assert result.ok and result.endpoint is None
    refused = f"connection refused to {dead_url}/health"
    assert result.value == [
        {"endpoint": urls[0], "ok": True, "value": {"node": "a"}, "error": None},
        {"endpoint": urls[1], "ok": False, "value": None, "error": refused},
        {"endpoint": urls[2], "ok": True, "value": {"node": "b"}, "error": None},
    ]
    assert result.endpoint_errors == ((dead_url, refused),)


def test_fanout_applies_select_per_endpoint(http_server: LoopbackServer, other_server: LoopbackServer) -> None:
    http_server.routes["/health"] = lambda _: json_reply({"lag": 1})
    other_server.routes["/health"] = lambda _: json_reply({"other": 1})
    loaded = make_config(
        {"nodes": {"urls": [http_server.url, other_server.url], "mode": "fanout"}},
        {"lag": {"http": {"target": "nodes", "path": "/health"}, "select": "body.lag"}},
    )
    result = observe_once(loaded)["lag"]
    assert result.ok
    assert [(e["ok"], e["value"]) for e in result.value] == [(True, 1), (False, None)]
    assert result.value[1]["error"].startswith("select failed:")


def test_fanout_with_every_endpoint_dead_fails(dead_url: str) -> None:
    from tests.ports import free_port

    second = f"http://127.0.0.1:{free_port()}"
    loaded = make_config({"nodes": {"urls": [dead_url, second], "mode": "fanout"}}, {"health": {"http": {"target": "nodes"}}})
    result = observe_once(loaded)["health"]
    assert not result.ok and result.value is None
    assert result.error == f"all 2 endpoints failed: connection refused to {dead_url}/; connection refused to {second}/"
    assert [e for e, _ in result.endpoint_errors] == [dead_url, second]


def test_failover_skips_dead_and_failing_endpoints(http_server: LoopbackServer, other_server: LoopbackServer, dead_url: str) -> None:
    http_server.routes["/leader"] = lambda _: Reply(500, b"internal error", "text/plain")
    other_server.routes["/leader"] = lambda _: json_reply({"leader": "pd-3"})
    urls = [dead_url, http_server.url, other_server.url]
    loaded = make_config({"pd": {"urls": urls, "mode": "failover"}}, {"leader": {"http": {"target": "pd", "path": "/leader"}}})
    result = observe_once(loaded)["leader"]
    assert result.ok and result.value == {"leader": "pd-3"} and result.endpoint == other_server.url
    assert result.endpoint_errors == (
        (dead_url, f"connection refused to {dead_url}/leader"),
        (http_server.url, f"HTTP 500 from {http_server.url}/leader: internal error"),
    )
    assert [r.path for r in other_server.seen] == ["/leader"]


def test_failover_stops_at_first_success(http_server: LoopbackServer, other_server: LoopbackServer) -> None:
    http_server.routes["/x"] = lambda _: json_reply("first")
    other_server.routes["/x"] = lambda _: json_reply("second")
    loaded = make_config({"pd": {"urls": [http_server.url, other_server.url], "mode": "failover"}}, {"x": {"http": {"target": "pd", "path": "/x"}}})
    result = observe_once(loaded)["x"]
    assert (result.value, result.endpoint, result.endpoint_errors) == ("first", http_server.url, ())
    assert other_server.seen == []


def test_stalled_observations_time_out_concurrently(http_server: LoopbackServer) -> None:
    """Two hung endpoints with a 500 ms timeout and two healthy ones: both hung requests are in
    flight at once (the tick waits one timeout, not the sum), the hung ones fail with a
    timeout, the healthy ones succeed. No wall-clock bound: the server counts what it holds."""
    http_server.stall("/hung")
    http_server.routes["/fine"] = lambda _: json_reply({"fine": True})
    loaded = make_config(
        {"api": {"url": http_server.url, "timeout": "5s"}},
        {
            "hung_a": {"http": {"target": "api", "path": "/hung"}, "timeout": "500ms"},
            "hung_b": {"http": {"target": "api", "path": "/hung"}, "timeout": "500ms"},
            "fine_a": {"http": {"target": "api", "path": "/fine"}},
            "fine_b": {"http": {"target": "api", "path": "/fine"}},
        },
    )
    results = observe_once(loaded)
    assert results["fine_a"].ok and results["fine_b"].ok
    for name in ("hung_a", "hung_b"):
        assert not results[name].ok
        assert results[name].error.startswith("timeout after 500ms")
    assert http_server.most_waiting == 2  # held together: one after the other would never be 2


def test_failover_moves_on_after_a_timeout(http_server: LoopbackServer, other_server: LoopbackServer) -> None:
    http_server.stall("/x")
    other_server.routes["/x"] = lambda _: json_reply("answer")
    loaded = make_config(
        {"pd": {"urls": [http_server.url, other_server.url], "mode": "failover", "timeout": "300ms"}},
        {"x": {"http": {"target": "pd", "path": "/x"}}},
    )
    result = observe_once(loaded)["x"]
    assert result.ok and result.value == "answer"
    assert result.endpoint_errors[0][1].startswith("timeout after 300ms")


def test_secrets_are_redacted_from_errors(dead_url: str) -> None:
    url = f"{dead_url}/?key=hunter22"
    loaded = make_config({"api": {"url": url}}, {"x": {"http": {"target": "api"}}}, secrets=frozenset({"hunter22"}))
    result = observe_once(loaded)["x"]
    assert not result.ok and "hunter22" not in (result.error or "") and "[REDACTED]" in (result.error or "")
    assert result.endpoint_errors[0][0] == f"{dead_url}/?key=[REDACTED]"


def test_unknown_observation_name_is_a_config_error(http_server: LoopbackServer) -> None:
    loaded = make_config({"api": {"url": http_server.url}}, {"x": {"http": {"target": "api"}}})
    with pytest.raises(ConfigError, match="no observation named 'y'; declared observations: x"):
        run_with(loaded, lambda o: o.observe_all(["y"]))


def test_observe_all_subset_and_single_observe(http_server: LoopbackServer) -> None:
    http_server.routes["/a"] = lambda _: json_reply("a")
    http_server.routes["/b"] = lambda _: json_reply("b")
    loaded = make_config(
        {"api": {"url": http_server.url}},
        {"a": {"http": {"target": "api", "path": "/a"}}, "b": {"http": {"target": "api", "path": "/b"}}},
    )

    async def body(observer: Observer) -> tuple[dict[str, ObservationResult], ObservationResult]:
        return await observer.observe_all(["b"]), await observer.observe("a")

    subset, single = run_with(loaded, body)
    assert list(subset) == ["b"] and subset["b"].value == "b"
    assert single.value == "a"
    assert [r.path for r in http_server.seen] == ["/b", "/a"]


def test_target_base_path_is_kept(http_server: LoopbackServer) -> None:
    def echo(request: SeenRequest) -> Reply:
        return json_reply({"path": request.path})

    http_server.routes["/api/v1/x"] = echo
    loaded = make_config({"api": {"url": http_server.url + "/api/"}}, {"x": {"http": {"target": "api", "path": "/v1/x"}}})
    assert observe_once(loaded)["x"].value == {"path": "/api/v1/x"}
