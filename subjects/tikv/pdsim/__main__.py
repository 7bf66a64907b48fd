"""`python -m subjects.tikv.pdsim --pd-port 2379 [--pd-port 2381 ...] --prom-port 9090`

One process, one cluster model, one uvicorn server per PD front-end plus one for Prometheus, a
real-time tick loop. Prints one ready line (JSON after the prefix) and exits cleanly on SIGTERM.
A PD member taken down through `/sim/pd/{name}/down` closes its listener (connections are
refused) and reopens it on `/sim/pd/{name}/up`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Generator

import uvicorn

from .chaos import sim_routes
from .clock import SimClock
from .model import Cluster, SimSettings
from .pd_api import create_pd_app
from .prom_api import create_prom_app

READY_PREFIX = "pdsim ready "


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process handles SIGTERM once for all servers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m subjects.tikv.pdsim", description=__doc__.splitlines()[0])
    p.add_argument("--pd-port", type=int, action="append", required=True, help="repeat for several PD members")
    p.add_argument("--prom-port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--stores", type=int, default=3)
    p.add_argument("--regions", type=int, default=60)
    p.add_argument("--pd-members", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tick", type=float, default=1.0, help="real seconds between scheduling rounds")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    p.add_argument("--disconnect-after", type=float, default=20.0, help="PD's store disconnect threshold (s)")
    p.add_argument("--max-peer-down", type=float, default=600.0, help="TiKV max-peer-down-duration (s)")
    p.add_argument("--max-store-down-time", default=None, help='PD schedule config, Go duration e.g. "2m"')
    p.add_argument(
        "--advertise-local",
        action="store_true",
        help="advertise the real loopback URLs in /members and /health instead of http://pdN:2379",
    )
    return p


def _check(args: argparse.Namespace, p: argparse.ArgumentParser) -> None:
    for port in [*args.pd_port, args.prom_port]:
        if not 0 <= port <= 65535:
            p.error(f"port {port} is out of range 0-65535")
    if args.stores < 1 or args.regions < 1 or args.pd_members < 1:
        p.error("--stores, --regions and --pd-members must each be at least 1")
    if args.tick <= 0 or args.speed <= 0 or args.disconnect_after <= 0:
        p.error("--tick, --speed and --disconnect-after must be positive")


async def _serve(args: argparse.Namespace) -> int:
    clock = SimClock(args.speed)
    members = max(args.pd_members, len(args.pd_port))
    urls = {}
    if args.advertise_local:
        urls = {f"pd{i + 1}": f"http://{args.host}:{port}" for i, port in enumerate(args.pd_port)}
    cluster = Cluster(
        clock,
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
    control = sim_routes(cluster, clock.advance)

    def make_server(app: object, port: int) -> _Server:
        config = uvicorn.Config(app, host=args.host, port=port, log_level="warning", lifespan="off")  # type: ignore[arg-type]
        return _Server(config)

    pd_apps = {f"pd{i + 1}": create_pd_app(cluster, f"pd{i + 1}", control) for i in range(len(args.pd_port))}
    pd_ports = {f"pd{i + 1}": port for i, port in enumerate(args.pd_port)}
    pd_servers: dict[str, _Server] = {}
    tasks: dict[str, asyncio.Task[None]] = {}

    async def start_pd(name: str) -> None:
        server = make_server(pd_apps[name], pd_ports[name])
        pd_servers[name] = server
        tasks[name] = asyncio.create_task(server.serve())
        while not server.started:
            if tasks[name].done():
                raise SystemExit(f"pdsim: cannot listen on {args.host}:{pd_ports[name]} for {name}")
            await asyncio.sleep(0.01)
        pd_ports[name] = server.servers[0].sockets[0].getsockname()[1]

    prom = make_server(create_prom_app(cluster, control), args.prom_port)
    prom_task = asyncio.create_task(prom.serve())
    for name in pd_apps:
        await start_pd(name)
    while not prom.started:
        if prom_task.done():
            raise SystemExit(f"pdsim: cannot listen on {args.host}:{args.prom_port} for Prometheus")
        await asyncio.sleep(0.01)
    prom_port = prom.servers[0].sockets[0].getsockname()[1]

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    ready = {
        "pd": {name: f"http://{args.host}:{port}" for name, port in pd_ports.items()},
        "prometheus": f"http://{args.host}:{prom_port}",
    }
    print(READY_PREFIX + json.dumps(ready), flush=True)

    async def ticker() -> None:
        while not stop.is_set():
            cluster.tick()
            # Close or reopen listeners of PD members that chaos took down or brought back.
            for name in pd_apps:
                down = cluster.member(name).down
                running = name in pd_servers
                if down and running:
                    pd_servers.pop(name).should_exit = True
                    await tasks.pop(name)
                elif not down and not running:
                    await start_pd(name)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=args.tick)

    await ticker()
    for server in [*pd_servers.values(), prom]:
        server.should_exit = True
    await asyncio.gather(*tasks.values(), prom_task)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    _check(args, p)
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
