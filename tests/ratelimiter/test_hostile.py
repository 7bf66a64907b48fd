"""A node under hostile clients (issue 20, finding 8 and 3), against real node processes.

- a body above `RATELIMITER_MAX_BODY_BYTES` is refused with 413 before it is read (declared
  length) or as it crosses the bound (chunked);
- headers above `RATELIMITER_MAX_HEADER_BYTES` get 431; headers that do not arrive within
  `RATELIMITER_HEADER_TIMEOUT_MS` get 408 and their connection closed, so half-sent requests
  cannot hold a node's file descriptors: `/health` answers while more of them are open than
  the worker's connection limit;
- `.` and `..` are refused as policy names and as key segments (they would be dot segments of
  a management URL).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from nodes import AUTH, TOKEN, NodeGroup, raw_request

pytestmark = [pytest.mark.redis]

MAX_BODY = 64 * 1024
HEADER_TIMEOUT_MS = 300
MAX_CONNECTIONS = 40
ENV = {
    "RATELIMITER_TOKEN": TOKEN,
    "RATELIMITER_MAX_BODY_BYTES": str(MAX_BODY),
    "RATELIMITER_MAX_HEADER_BYTES": "4096",
    "RATELIMITER_HEADER_TIMEOUT_MS": str(HEADER_TIMEOUT_MS),
    "RATELIMITER_MAX_CONNECTIONS_PER_WORKER": str(MAX_CONNECTIONS),
}


@pytest.fixture(scope="module")
def node(redis_server: object) -> Iterator[str]:
    with NodeGroup(redis_server.url, count=1, env=ENV, id_prefix="hostile") as nodes:  # type: ignore[attr-defined]
        yield nodes[0].url


async def exchange(url: str, request: bytes, *, more: bytes = b"") -> tuple[bytes, bool]:
    """Send `request` (then `more`, unless the node already answered); read until the node
    closes. Returns what it answered and whether it closed the connection."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        if more:
            try:
                writer.write(more)
                await writer.drain()
            except ConnectionError:
                pass  # the node closed while we were still sending: what a refusal looks like
        async with asyncio.timeout(30):
            answer = await reader.read(-1)
        return answer, True
    finally:
        writer.close()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def problem_of(answer: bytes) -> dict[str, object]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower()
    return json.loads(body)  # type: ignore[no-any-return]


def check_request(body: bytes, *, length: int | None = None) -> bytes:
    declared = len(body) if length is None else length
    return (
        b"POST /v1/check HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {declared}\r\n\r\n".encode()
        + body
    )


def test_a_declared_body_above_the_cap_is_refused_before_it_is_read(node: str) -> None:
    # Only the headers are sent: the node answers 413 without waiting for 200 MB.
    answer, closed = asyncio.run(exchange(node, check_request(b"", length=200 * 1024 * 1024)))
    assert closed and status_of(answer) == 413
    problem = problem_of(answer)
    assert problem["status"] == 413 and "RATELIMITER_MAX_BODY_BYTES" in str(problem["detail"])


def test_a_chunked_body_is_cut_off_at_the_cap(node: str) -> None:
    head = b"POST /v1/check/batch HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"x" * 16 * 1024
    chunks = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * (MAX_BODY // len(chunk) + 4)
    answer, closed = asyncio.run(exchange(node, head, more=chunks + b"0\r\n\r\n"))
    assert closed and status_of(answer) == 413


def test_a_body_within_the_cap_is_served(node: str) -> None:
    response = asyncio.run(raw_request(node, "POST", "/v1/check", {"key": "fits"}))
    assert response.status == 200


def test_headers_above_the_cap_get_431(node: str) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: node\r\nX-Big: " + b"a" * 8192 + b"\r\n\r\n"
    answer, closed = asyncio.run(exchange(node, request))
    assert closed and status_of(answer) == 431


def test_half_sent_headers_time_out_and_cannot_starve_the_node(node: str) -> None:
    async def main() -> None:
        host, port = node.removeprefix("http://").rsplit(":", 1)
        # More half-sent requests than the worker takes connections, one header line each.
        slow = []
        for _ in range(MAX_CONNECTIONS + 10):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /health HTTP/1.1\r\nHost: node\r\n")
            slow.append((reader, writer))
        try:
            async with asyncio.timeout(30):
                # Each is answered 408 and closed by the node (nothing more is ever sent).
                answers = await asyncio.gather(*(reader.read(-1) for reader, _ in slow))
                assert {status_of(answer) for answer in answers if answer} == {408}
                assert all(reader.at_eof() for reader, _ in slow)
                # And the node serves again.
                while (await raw_request(node, "GET", "/health")).status != 200:
                    await asyncio.sleep(0.05)
        finally:
            for _, writer in slow:
                writer.close()

    asyncio.run(main())


def test_a_slow_client_that_keeps_trickling_is_cut_off_too(node: str) -> None:
    async def main() -> bytes:
        host, port = node.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        answer = asyncio.create_task(reader.read(-1))
        try:
            writer.write(b"GET /health HTTP/1.1\r\nX-Slow: ")
            async with asyncio.timeout(30):
                # One byte of header now and then: each arrives within the timeout, the
                # headers as a whole never do.
                while not answer.done():
                    try:
                        writer.write(b"X")
                        await writer.drain()
                    except ConnectionError:
                        break
                    await asyncio.wait((answer,), timeout=HEADER_TIMEOUT_MS / 3000)
                return await answer
        finally:
            writer.close()

    assert status_of(asyncio.run(main())) == 408


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_segments_are_not_policy_names(node: str, name: str) -> None:
    async def main() -> None:
        # Sent raw (percent-encoded), as no HTTP client would remove them.
        encoded = name.replace(".", "%2E")
        put = await raw_request(node, "PUT", f"/v1/policies/{encoded}", {"limit": 5, "window_ms": 1000}, AUTH)
        assert put.status == 422 and "dot segment" in put.body.decode()
        listing = await raw_request(node, "GET", "/v1/policies", headers=AUTH)
        assert name not in listing.json()["policies"]

    asyncio.run(main())


@pytest.mark.parametrize("key", ["..", ".", "a/../b", "../../nodes/node1", "x/."])
def test_keys_with_dot_segments_are_refused(node: str, key: str) -> None:
    async def main() -> None:
        check = await raw_request(node, "POST", "/v1/check", {"key": key})
        assert check.status == 422 and "path segment" in check.body.decode()
        batch = await raw_request(node, "POST", "/v1/check/batch", {"checks": [{"key": key}]})
        assert batch.status == 422
        override = await raw_request(
            node, "PUT", "/v1/policies/dots", {"limit": 5, "window_ms": 1000, "overrides": {key: 3}}, AUTH
        )
        assert override.status == 422
        # Keys with dots that are not whole segments are ordinary keys.
        assert (await raw_request(node, "POST", "/v1/check", {"key": key.replace(".", "..x")})).status == 200

    asyncio.run(main())
