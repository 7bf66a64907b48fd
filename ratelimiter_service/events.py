"""A node's operational events, one JSON line each on stderr: what an operator greps for.

`start` and `stop` (once per run of `python -m ratelimiter_service`, with the node id, its
address, the Redis URL with its password redacted, workers and version), and per worker
process `redis_lost` / `redis_back` (the first failed Redis call after a success, and the first
success after a failure) and `failure_mode_entered` / `failure_mode_exited` (the first decision
made without Redis, and the first made with it again, with how many were made without).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

logger = logging.getLogger("ratelimiter_service.events")

_USERINFO = re.compile(r"(?<=://)([^/@]*)@")


def redacted_url(url: str) -> str:
    """The URL without its password: `redis://user:secret@h` → `redis://user:***@h`."""

    def mask(match: re.Match[str]) -> str:
        user, sep, _ = match.group(1).partition(":")
        return f"{user}:***@" if sep else ("***@" if user else "@")

    return _USERINFO.sub(mask, url, count=1)


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        return json.dumps({"ts": stamp, "event": record.getMessage(), "pid": record.process, **fields})


def configure() -> None:
    """Events go to stderr as JSON lines (once per process; the entry point and its workers)."""
    if any(isinstance(h.formatter, JsonLines) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def emit(event: str, **fields: Any) -> None:
    logger.info(event, extra={"fields": fields})


class NodeEvents:
    """Edges of one worker's Redis and failure-mode states (a flag test per call otherwise)."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.redis_lost = False
        self.in_failure_mode = False
        self.failure_mode_decisions = 0

    def redis_failed(self, operation: str, exc: BaseException) -> None:
        if not self.redis_lost:
            self.redis_lost = True
            emit("redis_lost", node=self.node_id, operation=operation, error=f"{type(exc).__name__}: {exc}")

    def redis_answered(self) -> None:
        if self.redis_lost:
            self.redis_lost = False
            emit("redis_back", node=self.node_id)

    def decided(self, failure_mode: str | None) -> None:
        if failure_mode is not None:
            self.failure_mode_decisions += 1
            if not self.in_failure_mode:
                self.in_failure_mode = True
                emit("failure_mode_entered", node=self.node_id, mode=failure_mode)
        elif self.in_failure_mode:
            self.in_failure_mode = False
            emit("failure_mode_exited", node=self.node_id, decisions_without_redis=self.failure_mode_decisions)
            self.failure_mode_decisions = 0
