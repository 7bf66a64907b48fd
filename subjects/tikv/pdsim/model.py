"""The simulated cluster: stores, regions, PD members, schedulers, operators, driven by `tick()`.

Time comes only from the injected clock (unix seconds). `tick()` is one scheduling round: store
heartbeats, raft leader failover, region health as leaders report it, operators, schedulers,
replica checks, then the gRPC traffic of the round (the counters each TiKV exports at `/metrics`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from .constants import (
    NODE_REMOVED,
    NODE_REMOVING,
    NODE_SERVING,
    ROLE_LEARNER,
    ROLE_VOTER,
    STATE_NAMES,
    STATE_OFFLINE,
    STATE_TOMBSTONE,
    STATE_UP,
)
from .formats import go_duration, go_time_string, parse_go_duration
from .traffic import GrpcTraffic

Clock = Callable[[], float]


GiB = 1024**3
MiB = 1024**2

EVICT_LEADER = "evict-leader-scheduler"
GRANT_LEADER = "grant-leader-scheduler"
BALANCE_LEADER = "balance-leader-scheduler"
KNOWN_SCHEDULERS = (
    "balance-leader-scheduler",
    "balance-region-scheduler",
    "balance-witness-scheduler",
    "evict-leader-scheduler",
    "evict-slow-store-scheduler",
    "evict-slow-trend-scheduler",
    "grant-leader-scheduler",
    "grant-hot-region-scheduler",
    "balance-hot-region-scheduler",
    "random-merge-scheduler",
    "scatter-range-scheduler",
    "scatter-range",
    "shuffle-hot-region-scheduler",
    "shuffle-leader-scheduler",
    "shuffle-region-scheduler",
    "split-bucket-scheduler",
    "transfer-witness-leader-scheduler",
    "label-scheduler",
)
DEFAULT_SCHEDULERS = (
    "balance-leader-scheduler",
    "balance-region-scheduler",
    "balance-hot-region-scheduler",
    "evict-slow-store-scheduler",
)
REGION_CHECKS = (
    "miss-peer",
    "extra-peer",
    "down-peer",
    "pending-peer",
    "offline-peer",
    "learner-peer",
    "empty-region",
    "oversized-region",
    "undersized-region",
)


def default_schedule_config() -> dict[str, object]:
    """PD v8.5 `ScheduleConfig` defaults (the subset the reference lists), in PD's field order."""
    return {
        "max-snapshot-count": 64,
        "max-pending-peer-count": 64,
        "max-merge-region-size": 54,
        "max-merge-region-keys": 540000,
        "split-merge-interval": "1h0m0s",
        "patrol-region-interval": "10ms",
        "max-store-down-time": "30m0s",
        "max-store-preparing-time": "48h0m0s",
        "leader-schedule-limit": 4,
        "leader-schedule-policy": "count",
        "region-schedule-limit": 2048,
        "replica-schedule-limit": 64,
        "merge-schedule-limit": 8,
        "hot-region-schedule-limit": 4,
        "tolerant-size-ratio": 0.0,
        "low-space-ratio": 0.8,
        "high-space-ratio": 0.7,
        "region-score-formula-version": "v2",
        "scheduler-max-waiting-operator": 5,
        "enable-remove-down-replica": "true",
        "enable-replace-offline-replica": "true",
        "enable-make-up-replica": "true",
        "enable-remove-extra-replica": "true",
        "enable-location-replacement": "true",
        "store-limit-version": "v1",
        "schedulers-v2": [
            {"type": "balance-region", "args": None, "disable": False, "args-payload": ""},
            {"type": "balance-leader", "args": None, "disable": False, "args-payload": ""},
        ],
    }


def default_replication_config() -> dict[str, object]:
    return {
        "max-replicas": 3,
        "location-labels": "",
        "strictly-match-label": "false",
        "enable-placement-rules": "true",
        "enable-placement-rules-cache": "false",
        "isolation-level": "",
    }


class PDError(Exception):
    """A PD API error: HTTP status and the message PD renders as a JSON string."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class SimSettings:
    """Timing constants of PD and TiKV; overridable so demos finish in seconds."""

    disconnect_after: float = 20.0  # PD storeDisconnectDuration
    heartbeat_interval: float = 10.0  # TiKV pd-store-heartbeat-tick-interval
    max_peer_down: float = 600.0  # TiKV raftstore.max-peer-down-duration
    unhealthy_after: float = 600.0  # PD storeUnhealthyDuration
    operator_timeout: float = 60.0  # fast operator steps (transfer leader)
    operator_record_ttl: float = 600.0
    replica_moves_per_tick: int = 4  # stands in for store limits when draining/replacing
    total_qps: float = 3000.0


@dataclass
class Store:
    id: int
    address: str
    status_address: str
    start_timestamp: int
    last_heartbeat_ns: int
    capacity: int
    other_used: int  # filesystem bytes not owned by TiKV
    version: str = "8.5.0"
    git_hash: str = "ba73b0d92d94463d74543550d0efe61fa6a6f416"
    labels: dict[str, str] = field(default_factory=dict)
    state: int = STATE_UP
    node_state: int = NODE_SERVING
    physically_destroyed: bool = False
    leader_weight: float = 1.0
    region_weight: float = 1.0
    slow_score: int = 1
    used: int = 0
    available: int = 0
    alive: bool = True  # the TiKV process runs (heartbeats, raft, gRPC)
    forced_available: int | None = None  # disk_full chaos
    extra_latency: float = 0.0  # hot_store chaos, seconds added to every gRPC request

    @property
    def serving(self) -> bool:
        """The TiKV process runs and its status port (`/metrics`) listens; a Tombstone's is stopped."""
        return self.alive and self.state != STATE_TOMBSTONE


@dataclass
class Peer:
    id: int
    store_id: int
    role: int = ROLE_VOTER


@dataclass
class Region:
    id: int
    start_key: str  # upper-case hex, "" = unbounded
    end_key: str
    conf_ver: int
    version: int
    peers: list[Peer]
    leader_peer_id: int
    approximate_size: int  # MiB
    approximate_keys: int
    down_peers: dict[int, int] = field(default_factory=dict)  # peer id -> down seconds
    pending_peer_ids: set[int] = field(default_factory=set)

    @property
    def leader(self) -> Peer:
        return next(p for p in self.peers if p.id == self.leader_peer_id)

    def peer_on(self, store_id: int) -> Peer | None:
        return next((p for p in self.peers if p.store_id == store_id), None)

    def voter_on(self, store_id: int) -> Peer | None:
        peer = self.peer_on(store_id)
        return peer if peer is not None and peer.role == ROLE_VOTER else None


@dataclass
class PdMember:
    name: str
    member_id: int
    client_url: str
    peer_url: str
    down: bool = False


@dataclass
class Operator:
    """An admin transfer-leader operator, shaped after PD's `Operator.String()`."""

    region_id: int
    from_store: int
    to_store: int
    region_version: int
    region_conf_ver: int
    size: int
    created_ns: int
    created_mono: float
    status: str = "RUNNING"  # RUNNING, SUCCESS, TIMEOUT, CANCEL
    finished_at: float | None = None

    def describe(self) -> str:
        created = go_time_string(self.created_ns, self.created_mono)
        text = (
            f"admin-transfer-leader {{transfer leader: store {self.from_store} to {self.to_store}}} "
            f"(kind:admin,leader, region:{self.region_id}({self.region_version}, {self.region_conf_ver}), "
            f"createAt:{created}, startAt:{created}, currentStep:{0 if self.status == 'RUNNING' else 1}, "
            f"size:{self.size}, steps:[0:{{transfer leader from store {self.from_store} to store "
            f"{self.to_store}}}], timeout:[{go_duration(60)}])"
        )
        suffix = {"SUCCESS": " finished", "TIMEOUT": " timeout"}.get(self.status, "")
        return text + suffix


@dataclass
class StoreStats:
    leader_count: int = 0
    region_count: int = 0
    leader_size: int = 0
    region_size: int = 0
    learner_count: int = 0
    pending_peer_count: int = 0


class Cluster:
    """The whole simulated cluster. Not thread-safe: serve it from one event loop."""

    def __init__(
        self,
        clock: Clock,
        *,
        stores: int = 3,
        regions: int = 60,
        pd_members: int = 3,
        seed: int = 0,
        settings: SimSettings | None = None,
        pd_client_urls: dict[str, str] | None = None,
    ) -> None:
        if stores < 1 or regions < 1 or pd_members < 1:
            raise ValueError("stores, regions and pd_members must each be at least 1")
        self.clock = clock
        self.settings = settings or SimSettings()
        self._rng = random.Random(seed)
        self._started_at = clock()
        self._next_id = 1
        self.cluster_id = self._rng.getrandbits(63) | (1 << 62)
        self.bootstrap_ns = self._ns(self._started_at)
        self.schedule_config = default_schedule_config()
        self.replication_config = default_replication_config()
        self.schedulers: list[str] = list(DEFAULT_SCHEDULERS)
        self.paused_until: dict[str, float] = {}
        self.evict_leader_stores: list[int] = []
        self.evict_leader_batch = 3
        self.grant_leader_stores: list[int] = []
        self.operators: dict[int, Operator] = {}
        self.operator_records: dict[int, Operator] = {}
        self.traffic = GrpcTraffic(seed)
        self._last_tick = self._started_at
        self.members = self._make_members(pd_members, pd_client_urls or {})
        self.pd_leader: str | None = self.members[0].name
        self.stores: dict[int, Store] = {}
        for _ in range(stores):
            self._add_store()
        self.regions: dict[int, Region] = {}
        self._make_regions(regions)
        for store in self.stores.values():
            self._refresh_space(store)
        self.tick()

    # --- construction -------------------------------------------------------------------

    def _alloc_id(self) -> int:
        value = self._next_id
        self._next_id += 1
        return value

    @staticmethod
    def _ns(t: float) -> int:
        return round(t * 1e9)

    def _make_members(self, count: int, urls: dict[str, str]) -> list[PdMember]:
        members = []
        for i in range(1, count + 1):
            name = f"pd{i}"
            members.append(
                PdMember(
                    name=name,
                    member_id=self._rng.getrandbits(64) | (1 << 60),
                    client_url=urls.get(name, f"http://{name}:2379"),
                    peer_url=f"http://{name}:2380",
                )
            )
        return members

    def _add_store(self) -> Store:
        store_id = self._alloc_id()
        now = self.clock()
        store = Store(
            id=store_id,
            address=f"tikv{store_id}:20160",
            status_address=f"tikv{store_id}:20180",
            start_timestamp=int(now),
            last_heartbeat_ns=self._ns(now),
            capacity=int(311.7 * GiB),
            other_used=int(self._rng.uniform(80, 95) * GiB),
        )
        self.stores[store_id] = store
        return store

    def _make_regions(self, count: int) -> None:
        store_ids = sorted(self.stores)
        replicas = min(int(self.replication_config["max-replicas"]), len(store_ids))  # type: ignore[arg-type]
        boundaries = [""] + [f"7480000000000000FF{i:04X}5F720000000000000000F8" for i in range(1, count)] + [""]
        for i in range(count):
            region_id = self._alloc_id()
            peers = [
                Peer(id=self._alloc_id(), store_id=store_ids[(i + k) % len(store_ids)])
                for k in range(replicas)
            ]
            empty = self._rng.random() < 0.2
            size = 1 if empty else self._rng.randint(2, 96)
            self.regions[region_id] = Region(
                id=region_id,
                start_key=boundaries[i],
                end_key=boundaries[i + 1],
                conf_ver=1 + 2 * (replicas - 1),
                version=i + 1,
                peers=peers,
                leader_peer_id=peers[0].id,
                approximate_size=size,
                approximate_keys=0 if empty else size * self._rng.randint(8000, 12000),
            )

    # --- time and derived state ---------------------------------------------------------

    def now(self) -> float:
        return self.clock()

    def max_store_down_time(self) -> float:
        return parse_go_duration(str(self.schedule_config["max-store-down-time"]))

    def desired_replicas(self) -> int:
        return int(self.replication_config["max-replicas"])  # type: ignore[arg-type]

    def down_time(self, store: Store) -> float:
        return self.now() - store.last_heartbeat_ns / 1e9

    def state_name(self, store: Store) -> str:
        if store.state == STATE_UP:
            down = self.down_time(store)
            if down > self.max_store_down_time():
                return "Down"
            if down > self.settings.disconnect_after:
                return "Disconnected"
        return STATE_NAMES[store.state]

    def store_stats(self) -> dict[int, StoreStats]:
        stats = {store_id: StoreStats() for store_id in self.stores}
        for region in self.regions.values():
            for peer in region.peers:
                s = stats.setdefault(peer.store_id, StoreStats())
                s.region_count += 1
                s.region_size += region.approximate_size
                if peer.role == ROLE_LEARNER:
                    s.learner_count += 1
                if peer.id in region.pending_peer_ids:
                    s.pending_peer_count += 1
            leader = stats.setdefault(region.leader.store_id, StoreStats())
            leader.leader_count += 1
            leader.leader_size += region.approximate_size
        return stats

    @staticmethod
    def leader_score(store: Store, stats: StoreStats) -> float:
        return stats.leader_count / max(store.leader_weight, 1e-6)

    @staticmethod
    def region_score(store: Store, stats: StoreStats) -> float:
        # region-score v2 degenerates to size/weight while space is plentiful; enough here.
        return stats.region_size / max(store.region_weight, 1e-6)

    def is_low_space(self, store: Store) -> bool:
        if store.capacity == 0:
            return False
        if len(self.regions) < 100 and store.available > 8 * GiB:
            return False
        ratio = float(self.schedule_config["low-space-ratio"])  # type: ignore[arg-type]
        return store.available / store.capacity < 1 - ratio

    def region_flags(self, region: Region) -> set[str]:
        flags: set[str] = set()
        desired = self.desired_replicas()
        if len(region.peers) < desired:
            flags.add("miss-peer")
        if len(region.peers) > desired:
            flags.add("extra-peer")
        if region.down_peers:
            flags.add("down-peer")
        if region.pending_peer_ids:
            flags.add("pending-peer")
        if any(self.stores[p.store_id].node_state == NODE_REMOVING for p in region.peers if p.store_id in self.stores):
            flags.add("offline-peer")
        if any(p.role == ROLE_LEARNER for p in region.peers):
            flags.add("learner-peer")
        if region.approximate_size <= 1:
            flags.add("empty-region")
        if region.approximate_size > 144 or region.approximate_keys > 1_440_000:
            flags.add("oversized-region")
        merge_size = int(self.schedule_config["max-merge-region-size"])  # type: ignore[arg-type]
        merge_keys = int(self.schedule_config["max-merge-region-keys"])  # type: ignore[arg-type]
        if region.approximate_size <= merge_size and region.approximate_keys <= merge_keys:
            flags.add("undersized-region")
        return flags

    def store(self, store_id: int) -> Store:
        store = self.stores.get(store_id)
        if store is None:
            raise PDError(404, f"[PD:core:ErrStoreNotFound]store {store_id} not found")
        return store

    def region(self, region_id: int) -> Region:
        region = self.regions.get(region_id)
        if region is None:
            raise PDError(500, f"[PD:region:ErrRegionNotFound]region {region_id} not found")
        return region

    def member(self, name: str) -> PdMember:
        for member in self.members:
            if member.name == name:
                return member
        raise KeyError(name)

    def has_quorum(self) -> bool:
        return sum(not m.down for m in self.members) * 2 > len(self.members)

    def leader_target_ok(self, store: Store) -> bool:
        """Whether PD lets a leader move onto `store` (Up, connected, not evicted)."""
        return (
            store.state == STATE_UP
            and self.state_name(store) == "Up"
            and store.id not in self.evict_leader_stores
        )

    # --- store admin --------------------------------------------------------------------

    def set_store_state(self, store_id: int, state: str) -> None:
        store = self.store(store_id)
        if state.lower() == "up":
            if store.state == STATE_TOMBSTONE:
                raise PDError(410, f"[PD:core:ErrStoreRemoved]store {store_id} has been removed")
            if store.physically_destroyed:
                raise PDError(400, f"[PD:core:ErrStoreDestroyed]store {store_id} has been physically destroyed")
            store.state = STATE_UP
            store.node_state = NODE_SERVING
            return
        if state.lower() == "offline":
            self.delete_store(store_id, force=False)
            return
        raise PDError(400, f"invalid state {state}")

    def delete_store(self, store_id: int, *, force: bool) -> None:
        store = self.store(store_id)
        if store.state == STATE_TOMBSTONE:
            raise PDError(410, f"[PD:core:ErrStoreRemoved]store {store_id} has been removed")
        if store.state == STATE_UP:
            up_others = sum(
                1 for s in self.stores.values() if s.id != store_id and s.state == STATE_UP
            )
            if up_others < self.desired_replicas():
                raise PDError(
                    400,
                    f"[PD:core:ErrStoresNotEnough]can not remove store {store_id} since the number of up "
                    f"stores would be {up_others} while need {self.desired_replicas()}",
                )
        store.state = STATE_OFFLINE
        store.node_state = NODE_REMOVING
        store.physically_destroyed = store.physically_destroyed or force

    def set_store_weight(self, store_id: int, leader: float, region: float) -> None:
        store = self.stores.get(store_id)
        if store is None:
            raise PDError(500, f"[PD:core:ErrStoreNotFound]store {store_id} not found")
        store.leader_weight = leader
        store.region_weight = region

    # --- schedulers ---------------------------------------------------------------------

    def add_scheduler(self, name: str, store_id: int | None = None) -> str:
        if name not in KNOWN_SCHEDULERS:
            raise PDError(400, "unknown scheduler")
        if name in (EVICT_LEADER, GRANT_LEADER):
            if store_id is None:
                raise PDError(400, "missing store id")
            if store_id not in self.stores:
                raise PDError(500, f"[PD:core:ErrStoreNotFound]store {store_id} not found")
            target = self.evict_leader_stores if name == EVICT_LEADER else self.grant_leader_stores
            if name in self.schedulers:
                if store_id not in target:
                    target.append(store_id)
                return "The scheduler has been applied to the store."
            target.append(store_id)
            self.schedulers.append(name)
            return "The scheduler is created."
        if name == "scatter-range":
            name = "scatter-range-scheduler"
        if name in self.schedulers:
            raise PDError(400, "[PD:scheduler:ErrSchedulerExisted]scheduler existed")
        self.schedulers.append(name)
        return "The scheduler is created."

    def remove_scheduler(self, name: str) -> str | None:
        """Returns the success message; `None` for per-store deletes (PD renders `null`)."""
        for base, stores in ((EVICT_LEADER, self.evict_leader_stores), (GRANT_LEADER, self.grant_leader_stores)):
            if name.startswith(base + "-"):
                suffix = name.rsplit("-", 1)[-1]
                if base not in self.schedulers or not suffix.isdigit() or int(suffix) not in stores:
                    raise PDError(404, "[PD:scheduler:ErrSchedulerNotFound]scheduler not found")
                stores.remove(int(suffix))
                if not stores:
                    self.schedulers.remove(base)
                return None
        if name not in self.schedulers:
            raise PDError(404, "[PD:scheduler:ErrSchedulerNotFound]scheduler not found")
        self.schedulers.remove(name)
        self.paused_until.pop(name, None)
        if name == EVICT_LEADER:
            self.evict_leader_stores.clear()
        if name == GRANT_LEADER:
            self.grant_leader_stores.clear()
        return "The scheduler is removed."

    def pause_scheduler(self, name: str, delay: int) -> None:
        if name not in self.schedulers:
            raise PDError(500, "[PD:scheduler:ErrSchedulerNotFound]scheduler not found")
        if delay <= 0:
            self.paused_until.pop(name, None)
        else:
            self.paused_until[name] = self.now() + delay

    def scheduler_active(self, name: str) -> bool:
        return name in self.schedulers and self.paused_until.get(name, 0.0) <= self.now()

    # --- operators ----------------------------------------------------------------------

    def add_transfer_leader(self, region_id: int, to_store: int) -> None:
        region = self.region(region_id)
        if to_store not in self.stores or region.voter_on(to_store) is None:
            raise PDError(500, f"region has no voter in store {to_store}")
        if not self.leader_target_ok(self.stores[to_store]):
            raise PDError(500, "cannot create operator: target leader is not allowed")
        if region_id in self.operators:
            raise PDError(500, "[PD:schedule:ErrAddOperator]failed to add operator, maybe already have one")
        if region.leader.store_id == to_store:
            # PD builds no steps for a no-op transfer and reports it as created.
            return
        now = self.now()
        self.operators[region_id] = Operator(
            region_id=region_id,
            from_store=region.leader.store_id,
            to_store=to_store,
            region_version=region.version,
            region_conf_ver=region.conf_ver,
            size=region.approximate_size,
            created_ns=self._ns(now),
            created_mono=now - self._started_at,
        )

    def operator_status(self, region_id: int) -> str:
        op = self.operators.get(region_id) or self.operator_records.get(region_id)
        if op is None:
            raise PDError(500, "operator not found")
        return f"status: {op.status}, operator: {op.describe()}"

    # --- chaos --------------------------------------------------------------------------

    def stop_store(self, store_id: int) -> None:
        self.store(store_id).alive = False

    def start_store(self, store_id: int) -> None:
        store = self.store(store_id)
        if not store.alive:
            store.alive = True
            now = self.now()
            store.start_timestamp = int(now)
            store.last_heartbeat_ns = self._ns(now)
            self.traffic.reset(store.id)

    def set_available(self, store_id: int, available: int | None) -> None:
        store = self.store(store_id)
        store.forced_available = available
        self._refresh_space(store)

    def set_extra_latency(self, store_id: int, seconds: float, slow_score: int | None = None) -> None:
        store = self.store(store_id)
        store.extra_latency = seconds
        if slow_score is not None:
            store.slow_score = slow_score

    def skew_leaders(self, store_id: int) -> int:
        """Move every leader that can be onto `store_id`; returns how many moved."""
        self.store(store_id)
        moved = 0
        for region in self.regions.values():
            peer = region.voter_on(store_id)
            if peer is not None and region.leader_peer_id != peer.id:
                region.leader_peer_id = peer.id
                moved += 1
        return moved

    def set_member_down(self, name: str, down: bool) -> None:
        self.member(name).down = down
        self._elect_pd_leader()

    def _elect_pd_leader(self) -> None:
        if not self.has_quorum():
            self.pd_leader = None
            return
        current = self.pd_leader
        if current is None or self.member(current).down:
            self.pd_leader = next(m.name for m in self.members if not m.down)

    # --- the scheduling round -----------------------------------------------------------

    def tick(self) -> None:
        now = self.now()
        dt = max(0.0, now - self._last_tick)
        self._last_tick = now
        self._heartbeats(now)
        self._raft_failover()
        self._region_health(now)
        self._elect_pd_leader()
        if self.pd_leader is not None:
            self._run_operators(now)
            self._run_schedulers(now)
            self._drain_and_replace()
        self._generate_traffic(dt)

    def _refresh_space(self, store: Store) -> None:
        stats = self.store_stats().get(store.id, StoreStats())
        store.used = int(stats.region_size * MiB * 4.85)
        if store.forced_available is not None:
            store.available = store.forced_available
        else:
            store.available = max(0, store.capacity - store.other_used - store.used)

    def _heartbeats(self, now: float) -> None:
        for store in self.stores.values():
            if not store.alive or store.state == STATE_TOMBSTONE:
                continue
            if now - store.last_heartbeat_ns / 1e9 >= self.settings.heartbeat_interval:
                store.last_heartbeat_ns = self._ns(now)
                self._refresh_space(store)

    def _raft_failover(self) -> None:
        for region in self.regions.values():
            leader_store = self.stores.get(region.leader.store_id)
            if leader_store is not None and leader_store.alive:
                continue
            voters = [p for p in region.peers if p.role == ROLE_VOTER]
            alive = [p for p in voters if self.stores[p.store_id].alive]
            if len(alive) * 2 <= len(voters):
                continue  # no raft quorum: no election, PD keeps the stale leader
            stats = self.store_stats()
            best = min(alive, key=lambda p: (self.leader_score(self.stores[p.store_id], stats[p.store_id]), p.store_id))
            region.leader_peer_id = best.id

    def _region_health(self, now: float) -> None:
        for region in self.regions.values():
            leader_store = self.stores[region.leader.store_id]
            if not leader_store.alive:
                continue  # no leader heartbeats: PD keeps what it last heard
            region.down_peers = {}
            region.pending_peer_ids = set()
            for peer in region.peers:
                store = self.stores[peer.store_id]
                if store.alive:
                    continue
                silent = now - store.last_heartbeat_ns / 1e9
                if silent > self.settings.disconnect_after:
                    region.pending_peer_ids.add(peer.id)
                if silent > self.settings.max_peer_down:
                    region.down_peers[peer.id] = int(silent)

    def _transfer(self, region: Region, to_store: int) -> bool:
        peer = region.voter_on(to_store)
        if peer is None or not self.stores[to_store].alive:
            return False
        region.leader_peer_id = peer.id
        return True

    def _run_operators(self, now: float) -> None:
        for region_id, op in list(self.operators.items()):
            region = self.regions.get(region_id)
            target = self.stores.get(op.to_store)
            if region is None or target is None or region.voter_on(op.to_store) is None:
                op.status = "CANCEL"
            elif region.leader.store_id == op.to_store or (
                self.leader_target_ok(target) and self._transfer(region, op.to_store)
            ):
                op.status = "SUCCESS"
            elif now - (self._started_at + op.created_mono) > self.settings.operator_timeout:
                op.status = "TIMEOUT"
            if op.status != "RUNNING":
                op.finished_at = now
                self.operator_records[region_id] = self.operators.pop(region_id)
        for region_id, op in list(self.operator_records.items()):
            if op.finished_at is not None and now - op.finished_at > self.settings.operator_record_ttl:
                del self.operator_records[region_id]

    def _leader_candidates(self) -> list[Store]:
        return [s for s in self.stores.values() if self.leader_target_ok(s) and s.alive]

    def _run_schedulers(self, now: float) -> None:
        if self.scheduler_active(EVICT_LEADER):
            for store_id in self.evict_leader_stores:
                self._move_leaders_off(store_id, self.evict_leader_batch)
        if self.scheduler_active(GRANT_LEADER):
            for store_id in self.grant_leader_stores:
                self._move_leaders_onto(store_id, self.evict_leader_batch)
        if self.scheduler_active(BALANCE_LEADER):
            self._balance_leaders(int(self.schedule_config["leader-schedule-limit"]))  # type: ignore[arg-type]

    def _move_leaders_off(self, store_id: int, batch: int) -> None:
        moved = 0
        for region in sorted(self.regions.values(), key=lambda r: r.id):
            if moved >= batch:
                return
            if region.leader.store_id != store_id or region.id in self.operators:
                continue
            stats = self.store_stats()
            targets = [
                s for s in self._leader_candidates() if s.id != store_id and region.voter_on(s.id) is not None
            ]
            if targets:
                best = min(targets, key=lambda s: (self.leader_score(s, stats[s.id]), s.id))
                moved += self._transfer(region, best.id)

    def _move_leaders_onto(self, store_id: int, batch: int) -> None:
        store = self.stores.get(store_id)
        if store is None or store not in self._leader_candidates():
            return
        moved = 0
        for region in sorted(self.regions.values(), key=lambda r: r.id):
            if moved >= batch:
                return
            if region.leader.store_id != store_id and region.id not in self.operators:
                moved += self._transfer(region, store_id)

    def _balance_leaders(self, limit: int) -> None:
        # PD's leaderTolerantSizeRatio (5) applies while tolerant-size-ratio is 0 (adaptive).
        tolerance = float(self.schedule_config["tolerant-size-ratio"]) or 5.0  # type: ignore[arg-type]
        for _ in range(limit):
            candidates = self._leader_candidates()
            stats = self.store_stats()
            sources = [s for s in self.stores.values() if s.alive and stats[s.id].leader_count > 0]
            moved = False
            for source in sorted(sources, key=lambda s: -self.leader_score(s, stats[s.id])):
                for target in sorted(candidates, key=lambda s: (self.leader_score(s, stats[s.id]), s.id)):
                    if target.id == source.id or target.leader_weight <= 0:
                        continue
                    gap = self.leader_score(source, stats[source.id]) - self.leader_score(target, stats[target.id])
                    step = 1 / max(source.leader_weight, 1e-6) + 1 / target.leader_weight
                    if 2 * gap <= step or gap <= tolerance:
                        continue  # within tolerance, or one move would not narrow the gap
                    for region in sorted(self.regions.values(), key=lambda r: r.id):
                        if (
                            region.leader.store_id == source.id
                            and region.id not in self.operators
                            and self._transfer(region, target.id)
                        ):
                            moved = True
                            break
                    if moved:
                        break
                if moved:
                    break
            if not moved:
                return

    def _drain_and_replace(self) -> None:
        """Replica checker: move peers off Offline stores, and off Down stores after max-store-down-time."""
        budget = self.settings.replica_moves_per_tick
        for store in sorted(self.stores.values(), key=lambda s: s.id):
            draining = store.state == STATE_OFFLINE
            replacing = store.state == STATE_UP and self.state_name(store) == "Down"
            if not (draining or replacing):
                continue
            for region in sorted(self.regions.values(), key=lambda r: r.id):
                if budget <= 0:
                    return
                peer = region.peer_on(store.id)
                if peer is None:
                    continue
                if self._move_peer(region, peer):
                    budget -= 1
            stats = self.store_stats().get(store.id, StoreStats())
            if draining and stats.region_count == 0:
                store.state = STATE_TOMBSTONE
                store.node_state = NODE_REMOVED

    def _move_peer(self, region: Region, peer: Peer) -> bool:
        stats = self.store_stats()
        targets = [
            s
            for s in self.stores.values()
            if s.state == STATE_UP
            and self.state_name(s) == "Up"
            and s.alive
            and region.peer_on(s.id) is None
        ]
        if not targets:
            return False
        target = min(targets, key=lambda s: (self.region_score(s, stats[s.id]), s.id))
        if region.leader_peer_id == peer.id:
            others = [p for p in region.peers if p.id != peer.id and p.role == ROLE_VOTER and self.stores[p.store_id].alive]
            if not others:
                return False
            region.leader_peer_id = others[0].id
        region.peers.remove(peer)
        region.peers.append(Peer(id=self._alloc_id(), store_id=target.id))
        region.down_peers.pop(peer.id, None)
        region.pending_peer_ids.discard(peer.id)
        region.conf_ver += 2
        return True

    def _generate_traffic(self, dt: float) -> None:
        if dt <= 0:
            return
        stats = self.store_stats()
        total_leaders = sum(s.leader_count for s in stats.values()) or 1
        for store in self.stores.values():
            if not store.alive or store.state == STATE_TOMBSTONE:
                continue
            share = stats[store.id].leader_count / total_leaders
            self.traffic.advance(store.id, self.settings.total_qps * share, store.extra_latency, dt)
