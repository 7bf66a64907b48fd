"""`python -m subjects.tikv.pdsim --pd-port 2379 [--pd-port 2381 ...] [--store-port 20180 ...]`

One process, one cluster model on the wall clock, one uvicorn server per PD member (PD's API and
its `/metrics`) and per TiKV status port (that store's `/metrics`), a real-time tick loop. Prints
one ready line (JSON after the prefix) and exits cleanly on SIGTERM. A PD member taken down
through `/sim/pd/{name}/down`, or a store stopped through `/sim/chaos/store_down`, closes its
listener (connections are refused, as to a dead process) and reopens it when it comes back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import uvicorn

from .chaos import sim_routes
from .model import Cluster, SimSettings
from .pd_api import create_pd_app
from .tikv_status import create_tikv_status_app

READY_PREFIX = "pdsim ready "


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process handles SIGTERM once for all servers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class _Listener:
    """One simulated process's port: open while `wanted()` holds, closed otherwise."""

    what: str
    app: object
    port: int
    wanted: Callable[[], bool]
    server: _Server | None = None
    task: asyncio.Task[None] | None = None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m subjects.tikv.pdsim", description=__doc__.splitlines()[0])
    p.add_argument("--pd-port", type=int, action="append", required=True, help="repeat for several PD members")
    p.add_argument(
        "--store-port", type=int, action="append", default=[],
        help="a TiKV status port (its /metrics), repeated once per store in store order",
    )  # fmt: skip
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--stores", type=int, default=None, help="default: one per --store-port, else 3")
    p.add_argument("--regions", type=int, default=60)
    p.add_argument("--pd-members", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tick", type=float, default=1.0, help="real seconds between scheduling rounds")
    p.add_argument("--disconnect-after", type=float, default=20.0, help="PD's store disconnect threshold (s)")
    p.add_argument("--max-peer-down", type=float, default=600.0, help="TiKV max-peer-down-duration (s)")
    p.add_argument("--max-store-down-time", default=None, help='PD schedule config, Go duration e.g. "2m"')
    p.add_argument(
        "--advertise-local",
        action="store_true",
        help="advertise the PD members' real loopback URLs in /members and /health instead of http://pdN:2379 "
        "(stores keep advertising tikvN:20180: the TiKV lab's Prometheus labels each store's target so)",
    )
    return p


def _check(args: argparse.Namespace, p: argparse.ArgumentParser) -> None:
    for port in [*args.pd_port, *args.store_port]:
        if not 0 <= port <= 65535:
            p.error(f"port {port} is out of range 0-65535")
    if args.stores is None:
        args.stores = len(args.store_port) or 3
    if args.store_port and len(args.store_port) != args.stores:
        p.error(f"--stores {args.stores} needs one --store-port per store, got {len(args.store_port)}")
    if args.stores < 1 or args.regions < 1 or args.pd_members < 1:
        p.error("--stores, --regions and --pd-members must each be at least 1")
    if args.tick <= 0 or args.disconnect_after <= 0:
        p.error("--tick and --disconnect-after must be positive")


async def _serve(args: argparse.Namespace) -> int:
    members = max(args.pd_members, len(args.pd_port))
    urls = {}
    if args.advertise_local:
        urls = {f"pd{i + 1}": f"http://{args.host}:{port}" for i, port in enumerate(args.pd_port)}
    cluster = Cluster(
        time.time,
        stores=args.stores,
        regions=args.regions,
        pd_members=members,
        seed=args.seed,
        settings=SimSettings(
            disconnect_after=args.disconnect_after,
            # A lowered disconnect threshold must stay above the heartbeat interval, or healthy
            # stores flap to Disconnected between two heartbeats.
            heartbeat_interval=min(SimSettings.heartbeat_interval, args.disconnect_after / 2),
            max_peer_down=args.max_peer_down,
        ),
        pd_client_urls=urls,
    )
    if args.max_store_down_time:
        from .formats import go_duration_ns, parse_go_duration_ns

        try:
            cluster.schedule_config["max-store-down-time"] = go_duration_ns(parse_go_duration_ns(args.max_store_down_time))
        except ValueError as exc:
            print(f"pdsim: --max-store-down-time: {exc}", file=sys.stderr)
            return 2
    control = sim_routes(cluster)
    listeners: dict[str, _Listener] = {}
    for i, port in enumerate(args.pd_port):
        name = f"pd{i + 1}"
        listeners[name] = _Listener(
            f"PD member {name}", create_pd_app(cluster, name, control), port, lambda m=cluster.member(name): not m.down
        )
    for store_id, port in zip(sorted(cluster.stores), args.store_port):
        store = cluster.stores[store_id]
        listeners[f"tikv{store_id}"] = _Listener(
            f"TiKV store {store_id}", create_tikv_status_app(cluster, store_id), port, lambda s=store: s.serving
        )

    async def open_listener(listener: _Listener) -> None:
        config = uvicorn.Config(listener.app, host=args.host, port=listener.port, log_level="warning", lifespan="off")  # type: ignore[arg-type]
        server = listener.server = _Server(config)
        task = listener.task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                raise SystemExit(f"pdsim: cannot listen on {args.host}:{listener.port} for {listener.what}")
            await asyncio.sleep(0.01)
        # Port 0 asks for any free port: keep the bound one, so a reopened listener reuses it.
        listener.port = server.servers[0].sockets[0].getsockname()[1]

    async def close_listener(listener: _Listener) -> None:
        assert listener.server is not None and listener.task is not None
        listener.server.should_exit = True
        await listener.task
        listener.server = listener.task = None

    for listener in listeners.values():
        await open_listener(listener)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    ready = {
        "pd": {name: f"http://{args.host}:{l.port}" for name, l in listeners.items() if name.startswith("pd")},
        "tikv": {name: f"http://{args.host}:{l.port}" for name, l in listeners.items() if name.startswith("tikv")},
    }
    print(READY_PREFIX + json.dumps(ready), flush=True)

    while not stop.is_set():
        cluster.tick()
        # Close or reopen the listeners of members and stores that chaos took down or brought back.
        for listener in listeners.values():
            wanted, running = listener.wanted(), listener.server is not None
            if running and not wanted:
                await close_listener(listener)
            elif wanted and not running:
                await open_listener(listener)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=args.tick)

    for listener in listeners.values():
        if listener.server is not None:
            await close_listener(listener)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    _check(args, p)
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
