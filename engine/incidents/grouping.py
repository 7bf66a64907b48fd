"""Which incident a ticket joins: the values of `incidents.group_by` it has, as one text key.

`subject` (the default) puts every ticket of the subject into one incident while it is open;
`invariant`, `key`, `severity` and `labels.<name>` split them further.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.store import Ticket


def group_key(ticket: Ticket, group_by: Sequence[str], subject: str) -> str:
    """`subject=ratelimiter`, `invariant=x,key=y`...: equal keys share an incident."""
    parts = []
    for field in group_by:
        if field == "subject":
            value = subject
        elif field == "invariant":
            value = ticket.invariant
        elif field == "key":
            value = ticket.entity_key
        elif field == "severity":
            value = ticket.severity
        else:  # labels.<name> (the loader refuses anything else)
            value = ticket.labels.get(field.removeprefix("labels."), "")
        parts.append(f"{field}={value}")
    return ",".join(parts)
