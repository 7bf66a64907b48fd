"""Messages API traffic for evals: recorded as it happens, or replayed from a recording.

Both are httpx2 transports under the real anthropic client, so the claude provider runs exactly
as in production. `RecordingTransport` wraps the real network transport and keeps every request
body and response. `ReplayTransport` answers with recorded responses, in order, and only when the
request body is the one recorded: a prompt, a tool definition or an observation that changed
makes the recording stale, and it answers HTTP 400 saying where the request differs (the SDK does
not retry a 400), so a stale recording can never pass for a fresh answer.

Request headers (they carry the API key) are never kept; of the response headers only the
content type and request id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import httpx2

from engine.evals.recording import Exchange, Response

KEPT_HEADERS = ("content-type", "request-id")


class RecordingTransport(httpx2.AsyncBaseTransport):
    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.exchanges: list[Exchange] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        started = time.perf_counter()
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        latency = time.perf_counter() - started
        try:
            body: Any = json.loads(content)
        except ValueError:
            body = content.decode("utf-8", "replace")
        headers = {k: response.headers[k] for k in KEPT_HEADERS if k in response.headers}
        self.exchanges.append(
            Exchange(request=_body(request), response=Response(status=response.status_code, headers=headers, body=body), latency_s=latency)
        )
        return httpx2.Response(response.status_code, headers=response.headers, content=content, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class ReplayTransport(httpx2.AsyncBaseTransport):
    def __init__(self, exchanges: Sequence[Exchange]) -> None:
        self.pending = list(exchanges)
        self.used = 0
        self.stale: str | None = None  # why the replay could not go on

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        sent = _body(request)
        if not self.pending:
            return self._refuse(f"call {self.used + 1} was not recorded (the recording has {self.used})")
        expected = self.pending[0]
        difference = first_difference(expected.request, sent)
        if difference is not None:
            return self._refuse(f"call {self.used + 1} differs from the recording at {difference}")
        self.pending.pop(0)
        self.used += 1
        answer = expected.response
        content = answer.body if isinstance(answer.body, str) else json.dumps(answer.body)
        return httpx2.Response(answer.status, headers=answer.headers, content=content.encode(), request=request)

    def _refuse(self, reason: str) -> httpx2.Response:
        self.stale = self.stale or reason
        body = {"type": "error", "error": {"type": "invalid_request_error", "message": f"replay: the recording is stale: {reason}"}}
        return httpx2.Response(400, json=body)


def first_difference(expected: Any, actual: Any, path: str = "") -> str | None:
    """Where two JSON values first differ, as a dotted path with both sides shortened; None if equal."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in list(expected) + [k for k in actual if k not in expected]:
            if key not in expected or key not in actual:
                side = "recording" if key in expected else "request"
                return f"{path + '.' if path else ''}{key} (only in the {side})"
            found = first_difference(expected[key], actual[key], f"{path + '.' if path else ''}{key}")
            if found is not None:
                return found
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        for index, (e, a) in enumerate(zip(expected, actual)):
            found = first_difference(e, a, f"{path}[{index}]")
            if found is not None:
                return found
        if len(expected) != len(actual):
            return f"{path or 'the body'} ({len(expected)} items recorded, {len(actual)} sent)"
        return None
    if expected == actual and type(expected) is type(actual):
        return None
    if isinstance(expected, str) and isinstance(actual, str):
        # long prompts: show both sides from a little before the first character that differs
        at = next((i for i, (e, a) in enumerate(zip(expected, actual)) if e != a), min(len(expected), len(actual)))
        start = max(0, at - 20)
        return f"{path or 'the body'} (character {at}): recorded {_short(expected[start:])}, sent {_short(actual[start:])}"
    return f"{path or 'the body'}: recorded {_short(expected)}, sent {_short(actual)}"


def _body(request: httpx2.Request) -> dict[str, Any]:
    try:
        body = json.loads(request.content or b"{}")
    except ValueError:
        return {"unparsed": request.content.decode("utf-8", "replace")}
    return body if isinstance(body, dict) else {"body": body}


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."
