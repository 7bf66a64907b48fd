"""Keep observed data within a size budget (ticket snapshots, prompts) without breaking its shape."""

from __future__ import annotations

import json
from typing import Any


def size_of(value: Any) -> int:
    return len(json.dumps(value, default=str, separators=(",", ":")))


def trim(value: Any, budget: int) -> Any:
    """A copy of `value` whose JSON is at most about `budget` characters.

    Long lists keep their first elements plus a marker saying how many were dropped; long
    strings are cut with a marker. The shape (mapping keys, element types) is preserved, so
    templates and readers still find what they look for.
    """
    if size_of(value) <= budget:
        return value
    if isinstance(value, str):
        keep = max(budget - 40, 16)
        return value[:keep] + f"... [{len(value) - keep} more characters]"
    if isinstance(value, list):
        out: list[Any] = []
        used = 2
        share = max(budget // max(min(len(value), 8), 1), 64)
        for i, item in enumerate(value):
            piece = trim(item, share)
            cost = size_of(piece) + 1
            if used + cost > budget and out:
                out.append(f"... [{len(value) - i} more items]")
                break
            out.append(piece)
            used += cost
        return out
    if isinstance(value, dict):
        share = max(budget // max(len(value), 1), 64)
        return {k: trim(v, share) for k, v in value.items()}
    return value
