"""The console's web app: the JSON API (engine.serve.api), the bundled UI (engine/serve/static:
plain HTML, JS and CSS, no CDN, no build step) and strict security headers on every response.

    app = create_app(console, principals)
    run(app, host="127.0.0.1", port=8089)
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.trustedhost import TrustedHostMiddleware

from engine.errors import OpctlError
from engine.serve.api import router
from engine.serve.auth import Principal
from engine.serve.console import Console, NotFound

STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    # no inline script or style anywhere: the UI's code is in its own files
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response


LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]", "::1"]


def create_app(console: Console, principals: tuple[Principal, ...], *, loopback: bool = True) -> FastAPI:
    """On loopback only loopback Host names are answered: a page on another site that rebinds its
    DNS name to 127.0.0.1 gets nothing (tokens or not)."""
    app = FastAPI(
        title="opctl console",
        version="1",
        description="Incidents, tickets, approvals, silences and the kill switch over the store `opctl run` writes. "
        "Send `Authorization: Bearer TOKEN` (OPCTL_SERVE_TOKENS); writes need an approver's token.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # Swagger UI loads from a CDN: the console works air-gapped
        redoc_url=None,
    )
    app.state.console = console
    app.state.principals = principals
    app.add_middleware(SecurityHeaders)
    if loopback:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_NAMES)
    app.include_router(router)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": console.redactor.text(str(exc))}, status_code=404)

    @app.exception_handler(OpctlError)
    async def refused(_: Request, exc: OpctlError) -> JSONResponse:
        return JSONResponse({"detail": console.redactor.text(str(exc))}, status_code=409)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own shape (the one its OpenAPI documents), without echoing the input back
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app


def run(app: FastAPI, *, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False)
