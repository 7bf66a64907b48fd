"""Observations do not follow redirects unless a target opts in, and then only within its own
origin: a 302 from the observed endpoint can no longer send the target's headers to another
host or feed that host's body into the store (issue 20, finding 5). Bodies are capped while
they are read; endpoint URLs with query strings are joined correctly."""

from __future__ import annotations

from observe_support import LoopbackServer, Reply, http_server, json_reply, make_config, other_server  # noqa: F401 - fixtures
from test_observe_http import observe_once

SECRET_HEADERS = {"X-Api-Key": "key-9f3a1c77", "X-Tenant": "ops"}


def _redirecting(server: LoopbackServer, to: str) -> None:
    server.routes["/v1/nodes"] = lambda _: Reply(302, b"", "text/plain", headers={"Location": to})


def test_a_redirect_is_not_followed_by_default(http_server: LoopbackServer, other_server: LoopbackServer) -> None:
    other_server.routes["/steal"] = lambda _: json_reply({"nodes": ["from the attacker"]})
    _redirecting(http_server, other_server.url + "/steal")
    loaded = make_config({"api": {"url": http_server.url, "headers": SECRET_HEADERS, "token": "tok-5d2e"}},
                         {"nodes": {"http": {"target": "api", "path": "/v1/nodes"}}})
    result = observe_once(loaded)["nodes"]
    assert not result.ok and result.value is None
    assert result.error == f"HTTP 302 from {http_server.url}/v1/nodes: a redirect to {other_server.url}/steal, not followed (see the target's follow_redirects)"
    assert other_server.seen == []


def test_an_opted_in_redirect_to_another_origin_is_refused_and_nothing_reaches_it(http_server: LoopbackServer, other_server: LoopbackServer) -> None:
    other_server.routes["/steal"] = lambda _: json_reply({"nodes": ["from the attacker"]})
    _redirecting(http_server, other_server.url + "/steal")
    loaded = make_config({"api": {"url": http_server.url, "headers": SECRET_HEADERS, "follow_redirects": True}},
                         {"nodes": {"http": {"target": "api", "path": "/v1/nodes"}}})
    result = observe_once(loaded)["nodes"]
    assert not result.ok and "redirects to another origin" in str(result.error) and other_server.url in str(result.error)
    assert other_server.seen == []
    # the same host on another port is another origin too
    assert http_server.url.rsplit(":", 1)[0] == other_server.url.rsplit(":", 1)[0]


def test_an_opted_in_same_origin_redirect_is_followed_with_the_targets_headers(http_server: LoopbackServer, other_server: LoopbackServer) -> None:
    http_server.routes["/v2/nodes"] = lambda _: json_reply({"nodes": [{"id": "n1"}]})
    _redirecting(http_server, "/v2/nodes")
    loaded = make_config({"api": {"url": http_server.url, "headers": SECRET_HEADERS, "follow_redirects": True}},
                         {"nodes": {"http": {"target": "api", "path": "/v1/nodes"}}})
    result = observe_once(loaded)["nodes"]
    assert result.ok and result.value == {"nodes": [{"id": "n1"}]}
    assert [r.path for r in http_server.seen] == ["/v1/nodes", "/v2/nodes"]
    assert http_server.seen[1].headers["x-api-key"] == "key-9f3a1c77" and other_server.seen == []


def test_a_redirect_loop_ends_with_a_clear_error(http_server: LoopbackServer) -> None:
    _redirecting(http_server, "/v1/nodes")
    loaded = make_config({"api": {"url": http_server.url, "follow_redirects": True}}, {"nodes": {"http": {"target": "api", "path": "/v1/nodes"}}})
    result = observe_once(loaded)["nodes"]
    assert not result.ok and result.error == f"more than 5 redirects from {http_server.url}/v1/nodes"
    assert len(http_server.seen) == 6


def test_bodies_are_capped_while_streaming(http_server: LoopbackServer) -> None:
    big = b'{"pad": "' + b"x" * 300_000 + b'"}'
    http_server.routes["/declared"] = lambda _: Reply(200, big)
    http_server.routes["/streamed"] = lambda _: Reply(200, big, length=False)
    http_server.routes["/small"] = lambda _: json_reply({"ok": True})
    loaded = make_config(
        {"api": {"url": http_server.url, "max_body": 100_000}},
        {name: {"http": {"target": "api", "path": f"/{name}"}} for name in ("declared", "streamed", "small")},
    )
    results = observe_once(loaded)
    assert results["declared"].error == f"the body from {http_server.url}/declared is {len(big)} bytes, over the target's max_body of 100000"
    assert results["streamed"].error == f"the body from {http_server.url}/streamed is over the target's max_body of 100000 bytes"
    assert results["small"].ok and results["small"].value == {"ok": True}
    default = observe_once(make_config({"api": {"url": http_server.url}}, {"s": {"http": {"target": "api", "path": "/streamed"}}}))["s"]
    assert default.ok and len(default.value["pad"]) == 300_000  # the default (4 MiB) lets it through


def test_an_endpoint_with_a_query_string_gets_the_path_before_the_query(http_server: LoopbackServer) -> None:
    http_server.routes["/base/v1/nodes"] = lambda _: json_reply({"ok": True})
    loaded = make_config({"api": {"url": http_server.url + "/base?tenant=t1"}},
                         {"nodes": {"http": {"target": "api", "path": "/v1/nodes?a=1", "query": {"b": "2"}}}})
    assert observe_once(loaded)["nodes"].ok
    assert [r.path for r in http_server.seen] == ["/base/v1/nodes?tenant=t1&a=1&b=2"]
