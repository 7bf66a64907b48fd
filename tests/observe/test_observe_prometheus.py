"""prometheus observations against a server shaped like Prometheus' instant query API."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import pytest

from observe_support import LoopbackServer, Reply, SeenRequest, http_server, json_reply, make_config  # noqa: F401 - fixtures
from engine.observe import ObservationResult, Observer

VECTOR = {
    "status": "success",
    "data": {
        "resultType": "vector",
        "result": [
            {"metric": {"__name__": "up", "instance": "a:9100"}, "value": [1700000000.1, "1"]},
            {"metric": {"__name__": "up", "instance": "b:9100"}, "value": [1700000000.1, "0.5"]},
            {"metric": {"instance": "c:9100"}, "value": [1700000000.1, "NaN"]},
            {"metric": {"instance": "d:9100"}, "value": [1700000000.1, "+Inf"]},
            {"metric": {"instance": "e:9100"}, "value": [1700000000.1, "-Inf"]},
        ],
    },
}


def prometheus_api(request: SeenRequest) -> Reply:
    query = parse_qs(urlsplit(request.path).query)["query"][0]
    if query == "up":
        return json_reply(VECTOR)
    if query == "scalar(up)":
        return json_reply({"status": "success", "data": {"resultType": "scalar", "result": [1700000000, "42.5"]}})
    if query == "scalar(nothing)":
        return json_reply({"status": "success", "data": {"resultType": "scalar", "result": [1700000000, "NaN"]}})
    if query == "absent":
        return json_reply({"status": "success", "data": {"resultType": "vector", "result": []}})
    if query == "up[5m]":
        return json_reply({"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}, "values": [[1, "1"]]}]}})
    if query == "overloaded":
        return Reply(503, b"service unavailable", "text/plain")
    return json_reply(
        {"status": "error", "errorType": "bad_data", "error": 'invalid parameter "query": 1:4: parse error: unclosed left parenthesis'},
        status=400,
    )


@pytest.fixture
def prometheus(http_server: LoopbackServer) -> LoopbackServer:
    http_server.routes["/api/v1/query"] = prometheus_api
    return http_server


def observe(server: LoopbackServer, observations: dict[str, dict[str, object]]) -> dict[str, ObservationResult]:
    loaded = make_config({"prom": {"url": server.url}}, observations)

    async def main() -> dict[str, ObservationResult]:
        observer = Observer(loaded)
        try:
            return await observer.observe_all()
        finally:
            await observer.aclose()

    return asyncio.run(main())


def query(text: str, **extra: object) -> dict[str, object]:
    return {"prometheus": {"target": "prom", "query": text}, **extra}


def test_vector_becomes_labels_and_values_with_nan_and_inf_as_null(prometheus: LoopbackServer) -> None:
    result = observe(prometheus, {"up": query("up")})["up"]
    assert result.ok
    assert result.value == [
        {"labels": {"__name__": "up", "instance": "a:9100"}, "value": 1.0},
        {"labels": {"__name__": "up", "instance": "b:9100"}, "value": 0.5},
        {"labels": {"instance": "c:9100"}, "value": None},
        {"labels": {"instance": "d:9100"}, "value": None},
        {"labels": {"instance": "e:9100"}, "value": None},
    ]
    assert parse_qs(urlsplit(prometheus.seen[0].path).query) == {"query": ["up"]}


def test_scalar_is_one_element_with_empty_labels(prometheus: LoopbackServer) -> None:
    results = observe(prometheus, {"s": query("scalar(up)"), "nan": query("scalar(nothing)"), "empty": query("absent")})
    assert results["s"].value == [{"labels": {}, "value": 42.5}]
    assert results["nan"].value == [{"labels": {}, "value": None}]
    assert results["empty"].ok and results["empty"].value == []


def test_error_body_gives_prometheus_error_text(prometheus: LoopbackServer) -> None:
    result = observe(prometheus, {"bad": query("rate(up")})["bad"]
    assert not result.ok
    assert result.error == (
        "Prometheus bad_data for query 'rate(up': "
        'invalid parameter "query": 1:4: parse error: unclosed left parenthesis'
    )


def test_non_api_reply_and_matrix_are_errors(prometheus: LoopbackServer) -> None:
    results = observe(prometheus, {"busy": query("overloaded"), "range": query("up[5m]")})
    assert results["busy"].error == f"HTTP 503 from {prometheus.url}/api/v1/query: service unavailable"
    assert "range vector" in (results["range"].error or "")


def test_select_sees_value(prometheus: LoopbackServer) -> None:
    result = observe(
        prometheus,
        {"down": query("up", select="value.filter(s, s.value != null && s.value < 1.0).map(s, s.labels.instance)")},
    )["down"]
    assert result.ok and result.value == ["b:9100"]


def test_bearer_token_is_sent(prometheus: LoopbackServer) -> None:
    loaded = make_config({"prom": {"url": prometheus.url, "token": "grafana-cloud"}}, {"up": query("up")})

    async def main() -> ObservationResult:
        observer = Observer(loaded)
        try:
            return await observer.observe("up")
        finally:
            await observer.aclose()

    assert asyncio.run(main()).ok
    assert prometheus.seen[0].headers["authorization"] == "Bearer grafana-cloud"
