"""The Messages API, replayed: the real anthropic client talks to recorded responses.

Subclasses say where their recordings live (`recordings`) and, if they want, the client's
`max_retries` (None keeps the SDK's own retries)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import anthropic
import httpx2


class ReplayTransport:
    """Answers Messages API requests with recorded responses, in order; keeps every request body.

    A request beyond the recordings gets a 400 saying so (the SDK does not retry 400), so a test
    that calls the model more often than it recorded fails on its own assertions.
    """

    recordings: ClassVar[Path]
    max_retries: ClassVar[int | None] = None

    def __init__(self, *names: str) -> None:
        self.pending = [json.loads((self.recordings / name).read_text()) for name in names]
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        self.paths.append(request.url.path)
        self.requests.append(json.loads(request.content))
        if not self.pending:
            body = {"type": "error", "error": {"type": "invalid_request_error", "message": "no more recordings"}}
            return httpx2.Response(400, json=body)
        answer = self.pending.pop(0)
        return httpx2.Response(answer["status"], headers=answer["headers"], content=json.dumps(answer["body"]).encode())

    def client(self) -> anthropic.AsyncAnthropic:
        http = httpx2.AsyncClient(transport=httpx2.MockTransport(self.handler))
        if self.max_retries is None:
            return anthropic.AsyncAnthropic(api_key="test-key", http_client=http)
        return anthropic.AsyncAnthropic(api_key="test-key", http_client=http, max_retries=self.max_retries)

    def sent_text(self) -> str:
        """Everything sent to the API, as one text (to search for what must or must not be there)."""
        return json.dumps(self.requests)
