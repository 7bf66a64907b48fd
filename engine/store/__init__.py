"""The durable record: tickets, the append-only event log and invariant states, in SQLite or
PostgreSQL.

`store:` (or `OPCTL_STORE`, `--store`) names a SQLite file, the default: one file per subject,
created 0600 (it holds observed values), in WAL mode so `opctl tickets` can read while the engine
writes (engine.store.sqlite_file); or a PostgreSQL database, `postgresql://user:pass@host:port/db`
(engine.store.postgres), for replicas on more than one machine. Both have the same schema, made
by the same migrations (engine.store.dialect translates them), the same transactions and the
same append-only events; every message names the store with its password masked. Each tick is written in one transaction (states, tickets,
events), so a crash leaves the previous tick or the new one, never half of it; pending and
firing states are restored on start, so a restart neither re-opens nor loses tickets.

Ticket statuses (a string column; every status but `resolved` counts as open, and at most one
open ticket exists per (invariant, entity key), a partial unique index):
`open` (firing), `verifying` (an action ran; waiting for the invariant to hold), `escalated`
(verification window passed, attempts exhausted, every proposal refused, a proposal rejected or
expired: a human must look), `resolved`.
Events are append-only: `add_event` is the only writer and triggers refuse UPDATE and DELETE.

Acting (schema v3) keeps, beside tickets: proposals (one per recommended action, with the gate's
decision), executions (written BEFORE a request runs and updated after, so a crash never replays
one: executions left `executing` become `unknown` on the next start), cached diagnoses and
token spend (the DiagnosisCache / TokenLedger of engine.diagnose, see engine.act.records), and
switches (the kill switch and the mode override), which a running loop reads every tick, so
`opctl kill` from another process takes effect within one tick. Each of these changes writes its
audit event in the same transaction.

Reverts (schema v4): an action that declares a `revert` arms it when it succeeds, in the
execution's own transaction; once the ticket resolves the engine proposes and runs the revert on
the same ticket (engine.act.revert). A revert is `armed`, then `done` or `given_up`.

Leader lease (schema v5, engine.store.leasing): replicas sharing a store compete for one lease
timed by the database's clock; only the holder writes, each write checking its fencing token in
its own transaction. Every status change of a proposal or an execution is a compare-and-set, and
an execution starts in one transaction that checks the gates that read the store once more
(engine.store.limits), so two processes never run one proposal twice.

History (schema v6): `INSERT OR REPLACE` cannot rewrite events, proposals or executions.
Incidents (schema v7, engine.store.incidents) and the notification outbox (schema v8,
engine.store.outbox): tickets grouped by `incidents.group_by`, muting, and notifications written
in the tick and delivered off it.
Silences (schema v9, engine.store.silencing): matchers on invariant, key and severity with a
window, an author and a comment (engine.silences); added and expired with their audit events.

Credit: a verifying ticket that resolves gets `verified` (the action is credited) only when an
`effect_confirmed` event (its `verify.expr` held on fresh observations) exists for the proposal
that ran; otherwise `recovered`: the invariant holds again, the action's effect was not confirmed.
"""

from __future__ import annotations

from engine.store.base import BUSY_TIMEOUT_S
from engine.store.leasing import Lease
from engine.store.limits import Refusal, StartRule
from engine.store.migrations import MIGRATIONS, SCHEMA_VERSION
from engine.store.migrations import _statements as _statements  # tests split migrations with it
from engine.store.records import ArmedRevert, Event, Execution, Incident, Proposal, TickChanges, Ticket, TicketAct
from engine.store.reverting import REVERT_SOURCE
from engine.store.statuses import (
    ESCALATED,
    EXECUTION_STATUSES,
    KILL_SWITCH,
    LIVE_PROPOSALS,
    MODE_SWITCH,
    OPEN,
    PARKED_GROUPED,
    PARKED_KILLED,
    PARKED_MUTED,
    PARKED_NO_ACTION,
    PARKED_OBSERVE,
    PROPOSAL_STATUSES,
    RESOLVED,
    TICKET_STATUSES,
    VERIFYING,
)
from engine.store.store import Store

__all__ = [
    "ArmedRevert",
    "BUSY_TIMEOUT_S",
    "ESCALATED",
    "EXECUTION_STATUSES",
    "Event",
    "Execution",
    "Incident",
    "KILL_SWITCH",
    "Lease",
    "LIVE_PROPOSALS",
    "MIGRATIONS",
    "MODE_SWITCH",
    "OPEN",
    "PARKED_GROUPED",
    "PARKED_KILLED",
    "PARKED_MUTED",
    "PARKED_NO_ACTION",
    "PARKED_OBSERVE",
    "PROPOSAL_STATUSES",
    "Proposal",
    "RESOLVED",
    "Refusal",
    "REVERT_SOURCE",
    "SCHEMA_VERSION",
    "StartRule",
    "Store",
    "TICKET_STATUSES",
    "TickChanges",
    "Ticket",
    "TicketAct",
    "VERIFYING",
]
