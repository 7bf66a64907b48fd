"""A PD simulator for TiKV that speaks PD's real HTTP formats and exports TiKV's and PD's metrics.

`model.Cluster` is the stateful cluster (stores, regions, schedulers, operators, PD members) driven
by an injected clock and `tick()`; `pd_api` is each PD member's ASGI app (its API and `/metrics`),
`tikv_status` each TiKV's status server (`/metrics`), `exposition` what they export; `chaos` holds
the fault-injection control API under `/sim/...`; `python -m subjects.tikv.pdsim` serves it all on
the wall clock. A real Prometheus scrapes it (the TiKV lab runs one); nothing here answers PromQL.
"""

from __future__ import annotations
