"""Secrets never leave opctl: redact them from messages, snapshots, prompts and the audit log."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "[REDACTED]"

# Shapes of secrets that may appear in observed data even when we never saw their value.
_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(r"(?i)((?:redis|rediss|https?|postgresql|postgres)://[^:/@\s]*:)[^@\s]+(@)"),
    re.compile(r"(?i)((?:password|passwd|secret|token|api[_-]?key)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{4,}"),
]
_SECRET_KEY = re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key|authorization)")


class Redactor:
    """Replaces known secret values and secret-shaped text with [REDACTED]."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is masked whole; very short values are
        # not treated as secrets (masking "1" everywhere would destroy the data).
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def text(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK + (m.group(2) if m.lastindex and m.lastindex >= 2 else ""), text)
        return text

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value with secrets masked in strings and under secret-named keys."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {
                k: (MASK if isinstance(k, str) and _SECRET_KEY.search(k) and isinstance(v, str) and v else self.value(v))
                for k, v in value.items()
            }
        return value
