"""`prometheus` observations: an instant query against `/api/v1/query`.

The value is a list of `{labels, value}`: one element per vector sample, or one with empty
labels for a scalar. "NaN" (no data) and ±Inf become null but the sample stays in the list.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from engine.config.models import PrometheusQuery, Target
from engine.errors import ObservationError
from engine.observe.http_source import get, join_url, request_headers
from engine.observe.values import one_line, sample_value

QUERY_PATH = "/api/v1/query"


async def fetch(
    query: PrometheusQuery, endpoint: str, target: Target, timeout: float, session: httpx.AsyncClient
) -> list[dict[str, Any]]:
    url = join_url(endpoint, QUERY_PATH)
    response = await get(session, url, params={"query": query.query}, headers=request_headers(target, {}), timeout=timeout, target=target)
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or "status" not in payload:
        detail = one_line(response.text, 120)
        if response.is_success:
            raise ObservationError(f"not a Prometheus API reply from {url}: {detail}")
        raise ObservationError(f"HTTP {response.status_code} from {url}" + (f": {detail}" if detail else ""))
    if payload["status"] != "success":
        kind = payload.get("errorType") or "error"
        raise ObservationError(f"Prometheus {kind} for query {query.query!r}: {one_line(str(payload.get('error', '')))}")
    return query_result(payload.get("data"), url)


def query_result(data: Any, url: str) -> list[dict[str, Any]]:
    """The `data` member of a successful reply as a list of {labels, value}."""
    if not isinstance(data, dict):
        raise ObservationError(f"Prometheus reply from {url} has no `data` object")
    kind, result = data.get("resultType"), data.get("result")
    try:
        if kind == "vector":
            return [{"labels": dict(s.get("metric") or {}), "value": sample_value(s["value"][1])} for s in result]
        if kind == "scalar":
            return [{"labels": {}, "value": sample_value(result[1])}]
        if kind == "string":
            return [{"labels": {}, "value": str(result[1])}]
    except (KeyError, IndexError, TypeError) as exc:
        raise ObservationError(f"malformed Prometheus {kind} result from {url}: {one_line(json.dumps(result), 120)}") from exc
    if kind == "matrix":
        raise ObservationError(
            "the query returned a range vector (matrix); observations take instant values, "
            "so wrap it in a function such as rate(...) or last_over_time(...)"
        )
    raise ObservationError(f"unknown Prometheus result type {kind!r} from {url}")
