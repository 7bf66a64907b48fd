"""`GET /docs`: the API reference as one static HTML page made from the OpenAPI document.

FastAPI's default page loads Swagger UI from a CDN, which an air-gapped host cannot reach; this
page needs nothing but the node (the full document stays at `/openapi.json`).
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["operations"])

STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3em .5em;"
    "text-align:left;vertical-align:top}code{background:#f4f4f4;padding:0 .2em}.m{font-weight:bold}"
)


def render(document: dict[str, Any]) -> str:
    info = document.get("info", {})
    rows = []
    for path, operations in sorted(document.get("paths", {}).items()):
        for method, operation in operations.items():
            params = ", ".join(
                f"<code>{escape(p['name'])}</code> ({escape(p.get('in', ''))})" for p in operation.get("parameters", [])
            )
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            body_name = escape(str(body.get("$ref", "")).rsplit("/", 1)[-1])
            codes = ", ".join(
                f"{escape(code)} {escape(str(r.get('description', '')))}"
                for code, r in operation.get("responses", {}).items()
            )
            rows.append(
                f"<tr><td class=m>{escape(method.upper())}</td><td><code>{escape(path)}</code></td>"
                f"<td>{escape(operation.get('summary', ''))}</td><td>{params}</td><td>{body_name}</td>"
                f"<td>{codes}</td></tr>"
            )
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{escape(info.get('title', 'API'))}</title>"
        f"<style>{STYLE}</style></head><body><h1>{escape(info.get('title', ''))} "
        f"<small>{escape(info.get('version', ''))}</small></h1><p>{escape(info.get('description', ''))}</p>"
        "<p>The machine-readable document: <a href=/openapi.json>/openapi.json</a>.</p>"
        "<table><tr><th>method</th><th>path</th><th>what</th><th>parameters</th><th>body</th>"
        f"<th>responses</th></tr>{''.join(rows)}</table></body></html>"
    )


@router.get("/docs", include_in_schema=False)
async def docs(request: Request) -> HTMLResponse:
    app: FastAPI = request.app
    return HTMLResponse(render(app.openapi()))
