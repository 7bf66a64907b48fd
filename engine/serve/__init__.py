"""`opctl serve`: a web console and JSON API over the store `opctl run` writes.

    app = build(config_path, host="127.0.0.1", env=os.environ)   # ServeError for bad tokens or host
    engine.serve.app.run(app, host=..., port=...)

It never acts: every change it makes (approve/reject, kill/resume, mode, silences) is a store write
through the store's own methods, which a running loop picks up on its next tick, exactly as the
CLI's. Parts: `auth` (tokens, roles), `console` (what it reads and writes), `api` (routes),
`sse` (live updates), `app` (headers, static UI), `static/` (the UI: plain HTML/JS/CSS).
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI

from engine.errors import OpctlError


class ServeError(OpctlError):
    """The console cannot start as asked; the message says why and what to do."""


def build(config_path: str, *, host: str, env: Mapping[str, str], store: str | None = None) -> FastAPI:
    from engine.config.validate import load_config
    from engine.runtime import store_path
    from engine.serve.app import create_app
    from engine.serve.auth import TOKENS_VARIABLE, TokensError, is_loopback, tokens_from_env
    from engine.serve.console import Console
    from engine.store import Store

    try:
        principals = tokens_from_env(env)
    except TokensError as exc:
        raise ServeError(str(exc)) from None
    if not principals and not is_loopback(host):
        raise ServeError(
            f"refusing to listen on {host} without tokens: anyone who can reach it could read the store. "
            f"Set {TOKENS_VARIABLE}=name:token:role[,...] (role viewer or approver), or listen on 127.0.0.1"
        )
    loaded = load_config(config_path)
    # created when missing, so the console may start before the first `opctl run`
    console = Console(loaded, Store(store_path(config_path, store, loaded=loaded)))
    return create_app(console, principals, loopback=is_loopback(host))
