"""Diagnosis: explain a ticket and recommend declared actions; never act.

`Diagnoser.diagnose(request, mode=...)` answers with one `Diagnosis` whatever the provider:

- `claude`: a bounded tool-use conversation (engine.diagnose.claude);
- `runbook`: the invariant's runbook entries, offline (engine.diagnose.runbook);
- `replay`: recorded diagnoses from `diagnosis.replay_file` (engine.diagnose.replay);
- `auto`: claude when ANTHROPIC_API_KEY is set in `env`, else runbook.

It never raises for a provider's failure: when claude (or replay) gives no diagnosis, the runbook
answers and `fallback_reason` says why. Results are cached per `fingerprint`, fallbacks included,
so a persisting violation with unchanged data neither calls the model every tick nor retries a
failing API every tick.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from engine.config.validate import LoadedConfig
from engine.diagnose.prompt import prompt_context, render_prompts
from engine.diagnose.replay import ReplayEntry, load_replay, replay_diagnosis
from engine.diagnose.runbook import runbook_diagnosis
from engine.diagnose.tools import Observe
from engine.diagnose.types import (
    Alternative,
    Diagnosis,
    DiagnosisCache,
    DiagnosisRequest,
    ProviderFailure,
    RecommendedAction,
    Spend,
    Submission,
    TokenLedger,
)
from engine.errors import ConfigError
from engine.observe.values import one_line

if TYPE_CHECKING:
    import anthropic

    from engine.diagnose.claude import ClaudeProvider

__all__ = [
    "Alternative",
    "Diagnoser",
    "Diagnosis",
    "DiagnosisCache",
    "DiagnosisRequest",
    "RecommendedAction",
    "ProviderFailure",
    "Spend",
    "Submission",
    "TokenLedger",
    "choose_provider",
    "fingerprint",
    "prompt_context",
    "render_prompts",
]

API_KEY_VARIABLE = "ANTHROPIC_API_KEY"


def choose_provider(configured: str, env: Mapping[str, str]) -> str:
    """The provider that answers: `auto` resolves to claude when an API key is set, else runbook."""
    if configured == "auto":
        return "claude" if env.get(API_KEY_VARIABLE) else "runbook"
    return configured


def fingerprint(request: DiagnosisRequest) -> str:
    """Stable per ticket episode and entity content: same ticket, invariant, key and item → same text."""
    entity = json.dumps(request.item, sort_keys=True, separators=(",", ":"), default=str)
    identity = json.dumps(
        {
            "ticket": request.ticket.id,
            "invariant": request.invariant.name,
            "key": request.key,
            "entity": hashlib.sha256(entity.encode()).hexdigest(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(identity.encode()).hexdigest()


class Diagnoser:
    """Diagnoses tickets of one config with its configured provider (see the module docstring)."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        observe: Observe,
        cache: DiagnosisCache,
        ledger: TokenLedger,
        clock: Callable[[], float] = time.time,
        anthropic_client: anthropic.AsyncAnthropic | None = None,
        env: Mapping[str, str] = os.environ,
    ) -> None:
        self.loaded = loaded
        self.cache = cache
        self.ledger = ledger
        self.clock = clock
        settings = loaded.config.diagnosis
        self.provider = choose_provider(settings.provider, env)
        self._replay: tuple[ReplayEntry, ...] = ()
        if self.provider == "replay":
            assert settings.replay_file is not None  # the config model requires it with `replay`
            self._replay = load_replay(loaded.resolve(settings.replay_file))
        self._owned_client: anthropic.AsyncAnthropic | None = None
        self._claude: ClaudeProvider | None = None
        self._claude_missing = ""
        if self.provider == "claude":
            # imported here: the anthropic SDK takes seconds to import, and only Claude needs it
            from engine.diagnose.claude import ClaudeProvider, new_client

            client = anthropic_client
            if client is None and env.get(API_KEY_VARIABLE):
                client = self._owned_client = new_client(env[API_KEY_VARIABLE], settings.timeout)
            if client is None:
                self._claude_missing = f"{API_KEY_VARIABLE} is not set, so Claude cannot be called"
            else:
                self._claude = ClaudeProvider(loaded, client=client, observe=observe, ledger=ledger, clock=clock)

    async def diagnose(self, request: DiagnosisRequest, *, mode: str) -> Diagnosis:
        """The diagnosis of one ticket: from the cache when its fingerprint was diagnosed before."""
        key = fingerprint(request)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        diagnosis = await self._diagnose(request, mode, self.clock())
        self.cache.put(key, diagnosis)
        return diagnosis

    async def aclose(self) -> None:
        """Close the HTTP client this Diagnoser created (an injected client is the caller's)."""
        if self._owned_client is not None:
            client, self._owned_client = self._owned_client, None
            await client.close()

    # ------------------------------------------------------------------ providers

    async def _diagnose(self, request: DiagnosisRequest, mode: str, now: float) -> Diagnosis:
        if self.provider == "runbook":
            return runbook_diagnosis(self.loaded, request, now)
        if self.provider == "replay":
            found = replay_diagnosis(self._replay, request)
            if found is not None:
                return found
            reason = f"replay: no entry of diagnosis.replay_file matches invariant {request.invariant.name!r}, key {request.key!r}"
            return runbook_diagnosis(self.loaded, request, now, fallback_reason=reason)
        return await self._with_claude(request, mode, now)

    async def _with_claude(self, request: DiagnosisRequest, mode: str, now: float) -> Diagnosis:
        if self._claude is None:
            return runbook_diagnosis(self.loaded, request, now, fallback_reason=f"claude: {self._claude_missing}")
        spend = Spend()
        try:
            system, user = render_prompts(self.loaded, request, mode, now)
            return await self._claude.diagnose(request, system, user)
        except ProviderFailure as failure:
            reason, spend = failure.reason, failure.spend
        except ConfigError as exc:
            reason = f"the prompt could not be built: {exc}"
        except Exception as exc:  # a defect must not stop the tick; the reason is recorded
            reason = f"internal error: {type(exc).__name__}: {one_line(str(exc))}"
        fallback = runbook_diagnosis(self.loaded, request, now, fallback_reason=f"claude: {reason}")
        return fallback.model_copy(
            update={
                "model": None,
                "input_tokens": spend.input_tokens,
                "output_tokens": spend.output_tokens,
                "tool_calls": spend.tool_calls,
            }
        )
