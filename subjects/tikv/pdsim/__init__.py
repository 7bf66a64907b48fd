"""A PD + Prometheus simulator for TiKV that speaks PD's real HTTP formats.

`model.Cluster` is the stateful cluster (stores, regions, schedulers, operators, PD members) driven
by an injected clock and `tick()`; `pd_api` and `prom_api` are ASGI apps over it; `chaos` holds the
fault-injection control API under `/sim/...`; `python -m subjects.tikv.pdsim` serves it all.
"""

from __future__ import annotations
