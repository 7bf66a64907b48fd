"""The vocabulary of the ticket store: ticket, proposal and execution statuses, switch names and
why a ticket is parked (see the package docstring of engine.store for what each status means).
"""

from __future__ import annotations

RESOLVED = "resolved"
OPEN = "open"
VERIFYING = "verifying"
ESCALATED = "escalated"
TICKET_STATUSES = (OPEN, VERIFYING, ESCALATED, RESOLVED)  # only `resolved` is closed

PROPOSAL_STATUSES = (
    "proposed",  # observe mode: recorded only
    "refused",  # a gate said no (`gate`, `detail`)
    "awaiting_approval",
    "approved",
    "rejected",
    "expired",
    "cancelled",  # the kill switch, or its ticket resolved before it ran
    "executing",
    "succeeded",
    "failed",
)
LIVE_PROPOSALS = ("awaiting_approval", "approved", "executing")
EXECUTION_STATUSES = ("executing", "succeeded", "failed", "unknown")
KILL_SWITCH = "kill"
MODE_SWITCH = "mode"
# why a ticket is parked (not attempted again until something changes)
PARKED_KILLED = "kill_switch"  # until `opctl resume`
PARKED_OBSERVE = "observe"  # proposals recorded in observe mode; until the mode changes
PARKED_NO_ACTION = "no_action"  # the diagnosis recommends nothing: a human reads it
PARKED_MUTED = "muted"  # recorded only while a muting source (an inhibition) mutes it
PARKED_GROUPED = "grouped"  # its incident is diagnosed through another (the lead) ticket
# the live proposal statuses as an SQL list, for `status IN ...`
_LIVE = "('awaiting_approval', 'approved', 'executing')"
