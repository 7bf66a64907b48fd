"""Secrets never leave opctl: redact them from messages, snapshots, prompts and the audit log.

Two sources: the values the config loader collected (environment variables named like secrets
and values in secret positions, see engine.config.secrets), masked wherever they appear,
longest first; and secret-shaped text opctl never saw (a bearer token, URL credentials,
`password=...`, values under secret-named keys such as Redis's `requirepass`), masked by
pattern. A value read from a secret-named key is remembered and masked wherever it appears next.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "[REDACTED]"
MIN_SECRET = 4  # shorter values are not treated as secrets (masking "1" everywhere would destroy the data)

# Shapes of secrets that may appear in observed data even when we never saw their value.
_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(r"(?i)((?:redis|rediss|https?|postgresql|postgres)://[^:/@\s]*:)[^@\s]+(@)"),
    re.compile(r"(?i)((?:password|passwd|secret|token|api[_-]?key|requirepass|masterauth)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{4,}"),
    re.compile(r"(?i)(\b(?:requirepass|masterauth)\s+)[^\s\"',}]{4,}"),
]
_SECRET_KEY = re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key|authorization|requirepass|masterauth)")


class Redactor:
    """Replaces known secret values and secret-shaped text with [REDACTED]."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self._learn(secrets)

    def _learn(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is masked whole.
        self.secrets = sorted({*self.secrets, *(s for s in secrets if len(s) >= MIN_SECRET)}, key=len, reverse=True)

    def text(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK + (m.group(2) if m.lastindex and m.lastindex >= 2 else ""), text)
        return text

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value with secrets masked in strings and under secret-named keys
        (also `[name, value]` pairs in lists, as `CONFIG GET *` replies come)."""
        self._learn(_secret_values(value))
        return self._masked(value)

    def _masked(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [MASK if _after_secret_name(value, i) else self._masked(v) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: (MASK if _secret_entry(k, v) else self._masked(v)) for k, v in value.items()}
        return value


def _secret_entry(key: Any, value: Any) -> bool:
    return isinstance(key, str) and bool(_SECRET_KEY.search(key)) and isinstance(value, str) and bool(value)


def _after_secret_name(items: list[Any], index: int) -> bool:
    return index > 0 and _secret_entry(items[index - 1], items[index])


def _secret_values(value: Any) -> list[str]:
    """Values under secret-named keys, anywhere in `value`."""
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            found.extend([v] if _secret_entry(k, v) else _secret_values(v))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.extend([v] if _after_secret_name(value, i) else _secret_values(v))
    return found
