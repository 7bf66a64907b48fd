"""`python -m tests.unleased_loop CONFIG`: the engine loop of `opctl run --json` WITHOUT the leader
lease, for the race tests: two of these on one store act at once, and only the store's own
compare-and-sets keep them from running one proposal twice (engine.store.limits)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from engine.config.validate import load_config
from engine.loop import Monitor
from engine.store import Store


async def main(config: str) -> None:
    loaded = load_config(config)
    monitor = Monitor(loaded, store=Store(loaded.store_path))  # no replica: no lease
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def on_tick(report: object) -> None:
        print(json.dumps(report.as_json(), default=str), flush=True)  # type: ignore[attr-defined]

    try:
        await monitor.run(stop=stop, on_tick=on_tick)
    finally:
        monitor.store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
