"""`http` observations: GET a JSON document from an endpoint.

`fetch` returns the whole reply (status, lower-cased headers, parsed body) because the
observation's `select` may treat a non-2xx status as data; `reply_value` decides what the
observation's value is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from engine.config.models import HttpQuery, Target
from engine.durations import format_duration
from engine.errors import ObservationError
from engine.observe.values import one_line


@dataclass(frozen=True)
class HttpReply:
    url: str
    status: int
    headers: dict[str, str]
    body: Any  # parsed JSON, or the text when the body is not JSON

    @property
    def success(self) -> bool:
        return 200 <= self.status < 300


def join_url(endpoint: str, path: str) -> str:
    """`http://h:1/base?k=1` + `/v1/x?a=b` -> `http://h:1/base/v1/x?k=1&a=b`.

    The endpoint may carry a base path and a query string; the path goes before the query and
    both queries are kept. `path` is only ever a path (a `//host` start cannot change the host)."""
    base, _, base_query = endpoint.partition("?")
    rel, _, rel_query = path.partition("?")
    query = "&".join(q for q in (base_query, rel_query) if q)
    return base.rstrip("/") + "/" + rel.lstrip("/") + (f"?{query}" if query else "")


def request_headers(target: Target, extra: Mapping[str, str]) -> dict[str, str]:
    """Target headers, then the query's own, then the bearer token when the target has one."""
    headers = {"Accept": "application/json", **target.headers, **extra}
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"
    return headers


MAX_REDIRECTS = 5


async def get(
    client: httpx.AsyncClient, url: str, *, params: Mapping[str, str], headers: Mapping[str, str], timeout: float, target: Target
) -> httpx.Response:
    """One GET with transport failures turned into ObservationError with a one-line reason.

    `params` are added to a query string already in `url` (httpx would replace it). A redirect
    is followed only when the target allows it and only to the same origin, so the target's
    headers and token never reach another host; the body is read up to the target's `max_body`."""
    try:
        full = httpx.URL(url).copy_merge_params(dict(params)) if params else httpx.URL(url)
        for _ in range(MAX_REDIRECTS + 1):
            response = await _read_capped(client, full, headers, timeout, target.max_body)
            if not (response.is_redirect and target.follow_redirects):
                return response
            location = full.join(response.headers["location"])
            if (location.scheme, location.host, location.port) != (full.scheme, full.host, full.port):
                raise ObservationError(f"{url} redirects to another origin ({_origin(location)}); redirects are followed only within {_origin(full)}")
            full = location
        raise ObservationError(f"more than {MAX_REDIRECTS} redirects from {url}")
    except httpx.TimeoutException:
        raise ObservationError(f"timeout after {format_duration(timeout)} from {url}") from None
    except httpx.ConnectError as exc:
        if _refused(exc):
            raise ObservationError(f"connection refused to {url}") from None
        raise ObservationError(f"cannot connect to {url}: {one_line(str(exc)) or type(exc).__name__}") from None
    except httpx.HTTPError as exc:
        raise ObservationError(f"request to {url} failed: {one_line(str(exc)) or type(exc).__name__}") from None


async def _read_capped(client: httpx.AsyncClient, url: httpx.URL, headers: Mapping[str, str], timeout: float, max_body: int) -> httpx.Response:
    async with client.stream("GET", url, headers=dict(headers), timeout=timeout, follow_redirects=False) as response:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body:
            raise ObservationError(f"the body from {url} is {declared} bytes, over the target's max_body of {max_body}")
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():  # decoded: a compressed body is capped at its real size
            size += len(chunk)
            if size > max_body:
                raise ObservationError(f"the body from {url} is over the target's max_body of {max_body} bytes")
            chunks.append(chunk)
    # a plain response over the bytes read, so callers use .text, .json() and .headers as usual
    decoded = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in ("content-encoding", "content-length")]
    return httpx.Response(response.status_code, headers=decoded, content=b"".join(chunks), request=response.request)


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")


def _refused(exc: BaseException) -> bool:
    # httpx says "All connection attempts failed"; the refusal is further down the chain.
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or "refused" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def parse_body(response: httpx.Response, url: str) -> Any:
    """JSON when the body parses as JSON, whatever the content type says; the text otherwise.

    Some APIs send JSON under another content type (compact JSON as
    application/octet-stream, for one), so the body decides. A body declared JSON that does not parse
    is an error.
    """
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    text = response.text
    declared_json = content_type == "application/json" or content_type.endswith("+json")
    if text.strip():
        try:
            return json.loads(text)
        except ValueError as exc:
            if declared_json:
                raise ObservationError(f"invalid JSON from {url}: {one_line(str(exc))}") from None
    return text


async def fetch(query: HttpQuery, endpoint: str, target: Target, timeout: float, session: httpx.AsyncClient) -> HttpReply:
    url = join_url(endpoint, query.path)
    response = await get(session, url, params=query.query, headers=request_headers(target, query.headers), timeout=timeout, target=target)
    body = parse_body(response, url)
    headers = {name.lower(): value for name, value in response.headers.items()}
    return HttpReply(url=url, status=response.status_code, headers=headers, body=body)


def status_error(reply: HttpReply) -> ObservationError:
    """`HTTP 500 from <url>: <start of the body>`."""
    body = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
    detail = one_line(body, 120)
    if 300 <= reply.status < 400 and "location" in reply.headers:
        detail = f"a redirect to {one_line(reply.headers['location'], 120)}, not followed (see the target's follow_redirects)"
    return ObservationError(f"HTTP {reply.status} from {reply.url}" + (f": {detail}" if detail else ""))
