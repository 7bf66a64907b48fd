"""`python -m ratelimiter_service`: run one node (uvicorn) from `RATELIMITER_*` settings.

`RATELIMITER_WORKERS=N` runs N worker processes behind one port; they are one node in the
registry (same `RATELIMITER_NODE_ID`, one instance id generated here and inherited by the workers),
and one set of Prometheus metrics: they share a directory of metric files created here for the run
(see `metrics_dir`), so `/metrics` shows the whole node whichever worker answers it.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid

import uvicorn

from ratelimiter_service import __version__, events
from ratelimiter_service.http_guard import GuardedHttpToolsProtocol
from ratelimiter_service.metrics_dir import metrics_dir_for
from ratelimiter_service.rls.config import RlsConfigError, load_rls_config
from ratelimiter_service.settings import Settings, SettingsError, load_settings


def main() -> int:
    try:
        settings = load_settings()
        if settings.rls_config:  # checked here, not first in every worker
            load_rls_config(
                settings.rls_config, algorithm=settings.default_algorithm, failure_mode=settings.default_failure_mode
            )
    except (SettingsError, RlsConfigError) as exc:
        print(f"ratelimiter_service: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("RATELIMITER_INSTANCE_ID", uuid.uuid4().hex)
    events.configure()
    identity = {"node": settings.resolved_node_id, "address": settings.address}
    events.emit(
        "start", **identity, redis_url=events.redacted_url(settings.redis_url), workers=settings.workers,
        grpc_port=settings.grpc_port, version=__version__,
    )
    # uvicorn handles SIGTERM/SIGINT itself (a graceful shutdown), then restores the handlers
    # it found and raises the signal again: ours turns it into a normal exit, so the `stop`
    # event is written.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_quietly)
    try:
        _serve(settings)
    except SystemExit:
        pass
    finally:
        events.emit("stop", **identity)
    return 0


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _serve(settings: Settings) -> None:
    with metrics_dir_for(settings.workers):
        uvicorn.run(
            "ratelimiter_service.app:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers if settings.workers > 1 else None,
            # Bounded against hostile clients (see http_guard); h11's bound applies only if
            # someone swaps the protocol back to h11.
            http=GuardedHttpToolsProtocol,
            timeout_keep_alive=settings.keep_alive_timeout_ms / 1000,  # type: ignore[arg-type]  (a float works)
            limit_concurrency=settings.max_connections_per_worker,
            h11_max_incomplete_event_size=settings.max_header_bytes,
            log_level="warning",
            access_log=False,
        )


if __name__ == "__main__":
    sys.exit(main())
