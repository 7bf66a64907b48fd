"""A TiKV's status server (`--status-addr`, port 20180): `/metrics` of that one store.

The simulator process closes a store's listener while the store is stopped, so Prometheus'
scrape fails like a dead process's (connection refused) and the store's series go stale.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .exposition import metrics_response, tikv_metrics
from .model import Cluster


def create_tikv_status_app(cluster: Cluster, store_id: int) -> Starlette:
    cluster.store(store_id)

    async def metrics(request: Request) -> Response:
        return metrics_response(tikv_metrics(cluster, cluster.store(store_id)))

    return Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])
