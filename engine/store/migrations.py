"""The schema of the ticket store, as an append-only list of migrations, and its version."""

from __future__ import annotations

import sqlite3

# Schema migrations: MIGRATIONS[n] takes a file from version n to n + 1. Append only; never edit
# a migration that has shipped.
MIGRATIONS: tuple[str, ...] = (
    # v1: tickets, the event log, invariant states
    """
    CREATE TABLE tickets (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        invariant TEXT NOT NULL,
        entity_key TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        severity TEXT NOT NULL,
        status TEXT NOT NULL,
        held INTEGER NOT NULL DEFAULT 0,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        resolved_at REAL,
        occurrences INTEGER NOT NULL DEFAULT 1,
        message TEXT NOT NULL DEFAULT '',
        snapshot TEXT NOT NULL DEFAULT '{}',
        previous_ticket_id INTEGER REFERENCES tickets(id)
    );
    CREATE UNIQUE INDEX tickets_one_open ON tickets(invariant, entity_key) WHERE status != 'resolved';
    CREATE INDEX tickets_by_key ON tickets(invariant, entity_key, id);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ticket_id INTEGER REFERENCES tickets(id),
        invariant TEXT,
        entity_key TEXT,
        kind TEXT NOT NULL,
        actor TEXT NOT NULL,
        at REAL NOT NULL,
        data TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_by_ticket ON events(ticket_id, id);
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    CREATE TABLE entity_states (
        invariant TEXT NOT NULL,
        entity_key TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('ok', 'pending', 'firing')),
        active_since REAL,
        fired_at REAL,
        cleared_since REAL,
        last_error TEXT,
        last_change REAL NOT NULL,
        PRIMARY KEY (invariant, entity_key)
    ) WITHOUT ROWID;
    """,
    # v2: the last recorded failure of each observation, so the log records each change once
    """
    CREATE TABLE observation_errors (
        observation TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        since REAL NOT NULL
    );
    """,
    # v3: acting: diagnoses, token spend, proposals, executions, switches; ticket act state
    """
    ALTER TABLE tickets ADD COLUMN next_attempt_at REAL;
    ALTER TABLE tickets ADD COLUMN parked TEXT;
    ALTER TABLE tickets ADD COLUMN verify_deadline REAL;
    ALTER TABLE tickets ADD COLUMN verify_proposal_id INTEGER;
    CREATE TABLE diagnoses (
        fingerprint TEXT PRIMARY KEY,
        at REAL NOT NULL,
        diagnosis TEXT NOT NULL
    );
    CREATE TABLE token_spend (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ticket_id INTEGER,
        provider TEXT NOT NULL,
        model TEXT,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX token_spend_by_time ON token_spend(at);
    CREATE TABLE proposals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ticket_id INTEGER NOT NULL REFERENCES tickets(id),
        action TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        reason TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('proposed', 'refused', 'awaiting_approval', 'approved',
            'rejected', 'expired', 'cancelled', 'executing', 'succeeded', 'failed')),
        gate TEXT,
        detail TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        expires_at REAL,
        decided_by TEXT
    );
    CREATE INDEX proposals_by_ticket ON proposals(ticket_id, id);
    CREATE INDEX proposals_by_status ON proposals(status);
    CREATE TABLE executions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        proposal_id INTEGER NOT NULL REFERENCES proposals(id),
        ticket_id INTEGER NOT NULL REFERENCES tickets(id),
        action TEXT NOT NULL,
        entity_key TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('executing', 'succeeded', 'failed', 'unknown')),
        request TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL,
        duration_s REAL,
        response TEXT,
        error TEXT
    );
    CREATE INDEX executions_by_action ON executions(action, entity_key, started_at);
    CREATE INDEX executions_by_time ON executions(started_at);
    CREATE TABLE switches (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        actor TEXT NOT NULL,
        at REAL NOT NULL
    );
    """,
    # v4: reverts: armed with the execution of an action that declares one (same transaction),
    # run after its ticket resolves; `proposal_id` is the revert's current proposal
    """
    CREATE TABLE reverts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ticket_id INTEGER NOT NULL REFERENCES tickets(id),
        execution_id INTEGER NOT NULL UNIQUE REFERENCES executions(id),
        action TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL CHECK (status IN ('armed', 'done', 'given_up')),
        proposal_id INTEGER REFERENCES proposals(id),
        waiting TEXT,
        created_at REAL NOT NULL,
        closed_at REAL
    );
    CREATE INDEX reverts_by_status ON reverts(status, id);
    """,
    # v5: the leader lease of replicas sharing a store (engine.store.leasing): one row per lease,
    # timed by the database's clock; `token` only grows (the fencing token)
    """
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        token INTEGER NOT NULL,
        acquired_at REAL NOT NULL,
        renewed_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    """,
    # v6: the history cannot be replaced: `INSERT OR REPLACE` of an existing id would delete the
    # row and insert another, past the no-update and no-delete triggers
    """
    CREATE TRIGGER events_no_replace BEFORE INSERT ON events WHEN EXISTS (SELECT 1 FROM events WHERE id = NEW.id)
        BEGIN SELECT RAISE(ABORT, 'events are append-only: that id exists'); END;
    CREATE TRIGGER proposals_no_replace BEFORE INSERT ON proposals WHEN EXISTS (SELECT 1 FROM proposals WHERE id = NEW.id)
        BEGIN SELECT RAISE(ABORT, 'proposals cannot be replaced: that id exists'); END;
    CREATE TRIGGER executions_no_replace BEFORE INSERT ON executions WHEN EXISTS (SELECT 1 FROM executions WHERE id = NEW.id)
        BEGIN SELECT RAISE(ABORT, 'executions cannot be replaced: that id exists'); END;
    """,
    # v7: incidents (tickets grouped by `incidents.group_by`; one diagnosis per incident, by its
    # lead ticket) and muting (`muted_by`: why a ticket is recorded only, e.g. an inhibition)
    """
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        group_key TEXT NOT NULL,
        opened_at REAL NOT NULL,
        resolved_at REAL,
        lead_ticket_id INTEGER REFERENCES tickets(id)
    );
    CREATE INDEX incidents_by_group ON incidents(group_key, resolved_at);
    ALTER TABLE tickets ADD COLUMN incident_id INTEGER REFERENCES incidents(id);
    ALTER TABLE tickets ADD COLUMN muted_by TEXT;
    """,
    # v8: the notification outbox: one row per (receiver, event), written in the tick and
    # delivered off it; `notify_cursor` is the last audit event turned into notifications
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        receiver TEXT NOT NULL,
        event TEXT NOT NULL,
        source_event_id INTEGER NOT NULL,
        ticket_id INTEGER REFERENCES tickets(id),
        payload TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'expired')),
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        next_attempt_at REAL NOT NULL,
        delivered_at REAL,
        last_error TEXT,
        UNIQUE (receiver, source_event_id)
    );
    CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
    CREATE TABLE notify_cursor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        event_id INTEGER NOT NULL
    );
    """,
    # v9: silences (engine.silences): matchers on invariant/key/severity, a window, who and why
    """
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        matchers TEXT NOT NULL,
        starts_at REAL NOT NULL,
        ends_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        comment TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX silences_by_end ON silences(ends_at);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """Split a migration into statements (triggers contain `;` inside BEGIN ... END)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
