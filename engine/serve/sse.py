"""Live updates as Server-Sent Events: the stream polls the store's newest event id (one indexed
MAX per poll) and sends `event: change` with that id whenever it moves, so a page refetches
only what changed. A comment line every `keepalive` polls keeps proxies from closing it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

POLL_S = 0.5
KEEPALIVE_POLLS = 30


def frame(event: str, data: dict[str, object], *, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n"


async def changes(
    last_event_id: Callable[[], int],
    disconnected: Callable[[], Awaitable[bool]],
    *,
    since: int | None = None,
    poll_s: float = POLL_S,
) -> AsyncIterator[str]:
    """`change` frames from `since` (default: the current id, sent at once as the first frame)."""
    seen = since if since is not None else -1
    quiet = 0
    while not await disconnected():
        current = await asyncio.to_thread(last_event_id)
        if current != seen:
            seen = current
            quiet = 0
            yield frame("change", {"last_event_id": current}, event_id=current)
        else:
            quiet += 1
            if quiet >= KEEPALIVE_POLLS:
                quiet = 0
                yield ": keepalive\n\n"
        await asyncio.sleep(poll_s)
