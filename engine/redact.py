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
from functools import lru_cache
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
# Every pattern needs one of these: a string without any is left alone after one search (cheap
# enough to redact every observed value of every tick).
_HINT = re.compile(r"(?i)bearer|://|passw|secret|token|api[_-]?key|requirepass|masterauth")
_SECRET_KEY = re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key|authorization|requirepass|masterauth)")


class Redactor:
    """Replaces known secret values and secret-shaped text with [REDACTED]."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self._known: re.Pattern[str] | None = None
        self._learn(secrets)

    def _learn(self, secrets: Iterable[str]) -> None:
        new = {s for s in secrets if len(s) >= MIN_SECRET} - set(self.secrets)
        if not new:
            return
        # Longest first, so a secret containing another is masked whole (the alternation tries
        # its branches in order).
        self.secrets = sorted({*self.secrets, *new}, key=len, reverse=True)
        self._known = re.compile("|".join(map(re.escape, self.secrets))) if self.secrets else None

    def text(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(MASK, text)
        if _HINT.search(text):
            for pattern in _PATTERNS:
                text = pattern.sub(lambda m: m.group(1) + MASK + (m.group(2) if m.lastindex and m.lastindex >= 2 else ""), text)
        return text

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value with secrets masked in strings and under secret-named keys
        (also `[name, value]` pairs in lists, as `CONFIG GET *` replies come)."""
        learned: list[str] = []
        out = self._masked(value, learned)
        if {s for s in learned if len(s) >= MIN_SECRET} - set(self.secrets):
            # a secret field's value may appear elsewhere in the same value: mask again knowing it
            self._learn(learned)
            out = self._masked(value, [])
        return out

    def _masked(self, value: Any, learned: list[str]) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            out = []
            for i, v in enumerate(value):
                if i and _secret_entry(value[i - 1], v):
                    learned.append(v)
                    out.append(MASK)
                else:
                    out.append(self._masked(v, learned))
            return out
        if isinstance(value, dict):
            masked = {}
            for k, v in value.items():
                if _secret_entry(k, v):
                    learned.append(v)
                    masked[k] = MASK
                else:
                    masked[k] = self._masked(v, learned)
            return masked
        return value


@lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def _secret_entry(key: Any, value: Any) -> bool:
    return isinstance(value, str) and bool(value) and isinstance(key, str) and _secret_key(key)
