"""RFC 9457 problem details: every error of the HTTP API is `application/problem+json`."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"


def problem_body(status: int, detail: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    body.update({name: value for name, value in extra.items() if value is not None})
    return body


def problem(status: int, detail: str, *, headers: Mapping[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(problem_body(status, detail, **extra), status_code=status, headers=headers, media_type=PROBLEM_JSON)
