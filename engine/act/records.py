"""The diagnosis cache and token ledger of engine.diagnose, kept in the ticket store.

They implement the `DiagnosisCache` and `TokenLedger` protocols, so cached diagnoses and the
hourly token spend survive restarts and are shared by every process using the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import ValidationError

from engine.diagnose.types import Diagnosis
from engine.store import Store


class StoreDiagnosisCache:
    """Diagnoses by fingerprint. `stored` counts the puts of this object (new diagnoses)."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.stored = 0

    def get(self, fingerprint: str) -> Diagnosis | None:
        text = self.store.cached_diagnosis(fingerprint)
        if text is None:
            return None
        try:
            return Diagnosis.model_validate_json(text)
        except ValidationError:
            return None  # written by another version of opctl: diagnose again

    def put(self, fingerprint: str, diagnosis: Diagnosis) -> None:
        self.store.cache_diagnosis(fingerprint, diagnosis.model_dump_json(), self.clock())
        self.stored += 1


class StoreTokenLedger:
    """Tokens spent per model call, per ticket."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def spent_since(self, since: float) -> int:
        return self.store.tokens_spent_since(since)

    def record(self, ticket_id: int, provider: str, model: str | None, input_tokens: int, output_tokens: int, at: float) -> None:
        self.store.record_tokens(ticket_id, provider, model, input_tokens, output_tokens, at)
