"""Prometheus' HTTP query API (`/api/v1/query`, `/api/v1/query_range`) over the scrape history."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .model import Cluster
from .promql import PromQLError, Sample, Series, evaluate


def format_value(value: float) -> str:
    """strconv.FormatFloat(v, 'f', -1, 64) as Prometheus renders sample values."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return format(Decimal(repr(value)), "f")


def _json(payload: Any, status: int = 200) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(body, status_code=status, headers={"Content-Type": "application/json"})


def _error(kind: str, message: str) -> Response:
    status = 400 if kind == "bad_data" else 422
    return _json({"status": "error", "errorType": kind, "error": message}, status)


def _timestamp(t: float) -> float:
    return round(t, 3)


def _parse_time(raw: str | None, default: float, name: str) -> float:
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise PromQLError(f'invalid parameter "{name}": cannot parse "{raw}" to a valid timestamp') from None


def _render(value: object, at: float) -> dict[str, Any]:
    if isinstance(value, float):
        return {"resultType": "scalar", "result": [_timestamp(at), format_value(value)]}
    items = list(value)  # type: ignore[call-overload]
    if items and isinstance(items[0], Series):
        return {
            "resultType": "matrix",
            "result": [
                {"metric": dict(s.labels), "values": [[_timestamp(t), format_value(v)] for t, v in s.points]}
                for s in sorted(items, key=lambda s: s.labels)
            ],
        }
    return {
        "resultType": "vector",
        "result": [
            {"metric": dict(s.labels), "value": [_timestamp(at), format_value(s.value)]}
            for s in sorted(items, key=lambda s: s.labels)
            if isinstance(s, Sample)
        ],
    }


async def _params(request: Request) -> dict[str, str]:
    params = dict(request.query_params)
    if request.method == "POST":
        body = (await request.body()).decode("utf-8", "replace")
        params.update({k: v[-1] for k, v in parse_qs(body).items()})
    return params


def prom_routes(cluster: Cluster) -> list[BaseRoute]:
    async def query(request: Request) -> Response:
        params = await _params(request)
        if "query" not in params:
            return _error("bad_data", 'invalid parameter "query": query must not be empty')
        try:
            at = _parse_time(params.get("time"), cluster.now(), "time")
            value = evaluate(params["query"], cluster.history, at)
        except PromQLError as exc:
            return _error(exc.kind, str(exc))
        return _json({"status": "success", "data": _render(value, at)})

    async def query_range(request: Request) -> Response:
        params = await _params(request)
        try:
            start = _parse_time(params.get("start"), math.nan, "start")
            end = _parse_time(params.get("end"), math.nan, "end")
            step = _parse_time(params.get("step"), math.nan, "step")
            if math.isnan(start) or math.isnan(end) or math.isnan(step) or step <= 0 or end < start:
                raise PromQLError('invalid parameters "start", "end" and "step": need start <= end and step > 0')
            if (end - start) / step > 11000:
                raise PromQLError("exceeded maximum resolution of 11,000 points per timeseries")
            series: dict[tuple[tuple[str, str], ...], list[list[Any]]] = {}
            t = start
            while t <= end + 1e-9:
                value = evaluate(params.get("query", ""), cluster.history, t)
                samples = [Sample((), value)] if isinstance(value, float) else value
                for s in samples:
                    if isinstance(s, Series):
                        raise PromQLError("invalid expression type \"range vector\" for range query, must be Scalar or instant Vector")
                    series.setdefault(s.labels, []).append([_timestamp(t), format_value(s.value)])
                t += step
        except PromQLError as exc:
            return _error(exc.kind, str(exc))
        result = [{"metric": dict(k), "values": v} for k, v in sorted(series.items())]
        return _json({"status": "success", "data": {"resultType": "matrix", "result": result}})

    return [
        Route("/api/v1/query", query, methods=["GET", "POST"]),
        Route("/api/v1/query_range", query_range, methods=["GET", "POST"]),
    ]


def create_prom_app(cluster: Cluster, extra_routes: list[BaseRoute] | None = None) -> Starlette:
    return Starlette(routes=prom_routes(cluster) + list(extra_routes or []))
