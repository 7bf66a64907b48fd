"""The claude provider: a bounded tool-use conversation with the Messages API.

Each turn is one `messages.create` call. The model may call the read-only `observe_<name>`
tools and must finish with `submit_diagnosis`; `tool_choice` makes every turn a tool call and
forces `submit_diagnosis` on the last allowed turn (`diagnosis.max_tool_turns` calls in all) and
after a malformed submission. The submission is untrusted input, validated by pydantic; the
model gets the validation errors back once (MAX_MALFORMED), a second malformed one ends the
attempt.

Bounds on one model call: the SDK retries 408/409/429/5xx and connection errors MAX_RETRIES
times with exponential backoff (honouring retry-after), and the whole call, retries included,
must finish within `diagnosis.timeout` (our own bound: a retry-after of an hour must not stall
the engine). Before every call the hourly token budget is checked through the ledger; every
call's usage is recorded there at once, so a later failure still counts what was spent.

Every failure raises ProviderFailure, which carries what was spent; the Diagnoser falls back to
the runbook with the reason recorded. This is the only module that imports the anthropic SDK
(seconds to import), and the Diagnoser imports it only for configs that use Claude.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anthropic
from pydantic import ValidationError

from engine.config.validate import LoadedConfig
from engine.diagnose.schema import SUBMIT_TOOL, submission_schema
from engine.diagnose.tools import Observe, ObservationTools, observation_tools, run_observation
from engine.diagnose.types import Diagnosis, DiagnosisRequest, ProviderFailure, Spend, Submission, TokenLedger
from engine.durations import format_duration
from engine.observe.values import one_line
from engine.redact import Redactor

MAX_RETRIES = 2  # SDK retries per model call (3 attempts), exponential backoff from 0.5 s
MAX_MALFORMED = 1  # malformed submissions answered with their errors before giving up
HOUR = 3600.0
NUDGE = "Call submit_diagnosis now with your diagnosis."


def new_client(api_key: str, timeout: float) -> anthropic.AsyncAnthropic:
    """The client used when none is injected."""
    return anthropic.AsyncAnthropic(api_key=api_key, max_retries=MAX_RETRIES, timeout=timeout)


class ClaudeProvider:
    """Diagnoses with Claude through an `anthropic.AsyncAnthropic` client (bounded as above)."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        client: anthropic.AsyncAnthropic,
        observe: Observe,
        ledger: TokenLedger,
        clock: Callable[[], float],
    ) -> None:
        settings = loaded.config.diagnosis
        self.model = settings.model
        self.max_tokens = settings.max_tokens
        self.max_turns = settings.max_tool_turns
        self.timeout = settings.timeout
        self.token_budget = settings.token_budget_per_hour
        self.client = client.with_options(max_retries=MAX_RETRIES, timeout=settings.timeout)
        self.observe = observe
        self.ledger = ledger
        self.clock = clock
        self.redactor = Redactor(loaded.secrets)
        self.tools: ObservationTools = observation_tools(loaded.config)
        submit = {
            "name": SUBMIT_TOOL,
            "description": (
                "Submit your diagnosis of the ticket. Call it exactly once, when you are done; "
                "recommended actions must be declared actions with params matching their schemas."
            ),
            "input_schema": submission_schema(loaded.config.actions),
        }
        self.tool_definitions: list[dict[str, Any]] = [*self.tools.definitions, submit]

    async def diagnose(self, request: DiagnosisRequest, system: str, user: str) -> Diagnosis:
        """A validated Diagnosis (provider `claude`); raises ProviderFailure."""
        spend = Spend()
        messages: list[dict[str, Any]] = [{"role": "user", "content": user}]
        malformed = 0
        must_submit = False
        for turn in range(self.max_turns):
            if turn == self.max_turns - 1:
                must_submit = True
            choice = {"type": "tool", "name": SUBMIT_TOOL} if must_submit else {"type": "any"}
            response = await self._call(request, system, messages, choice, spend)
            uses = [block for block in response.content if block.type == "tool_use"]
            assistant = [_block(block) for block in response.content if block.type in ("text", "tool_use")]
            if not assistant:
                raise ProviderFailure(f"the model gave an empty answer (stop_reason {response.stop_reason})", spend)
            messages.append({"role": "assistant", "content": assistant})
            if not uses:
                # the model wrote prose instead of calling a tool: ask for the submission
                messages.append({"role": "user", "content": NUDGE})
                must_submit = True
                continue
            results: list[dict[str, Any]] = []
            for use in uses:
                if use.name == SUBMIT_TOOL:
                    try:
                        submission = Submission.model_validate(use.input)
                    except ValidationError as exc:
                        malformed += 1
                        problems = _problems(exc)
                        if malformed > MAX_MALFORMED:
                            raise ProviderFailure(f"the model's submission was malformed twice: {problems}", spend) from None
                        must_submit = True
                        text = f"Rejected: {problems}. Call submit_diagnosis again with a corrected input."
                        results.append(_result(use.id, text, is_error=True))
                        continue
                    return Diagnosis(
                        **submission.model_dump(),
                        provider="claude",
                        model=response.model or self.model,
                        input_tokens=spend.input_tokens,
                        output_tokens=spend.output_tokens,
                        tool_calls=spend.tool_calls,
                    )
                observation = self.tools.observation_of.get(use.name)
                if observation is None:
                    known = ", ".join([*self.tools.observation_of, SUBMIT_TOOL])
                    results.append(_result(use.id, f"There is no tool {use.name!r}; tools: {known}.", is_error=True))
                    continue
                spend.tool_calls += 1
                text, is_error = await run_observation(self.observe, observation, self.redactor)
                results.append(_result(use.id, text, is_error=is_error))
            messages.append({"role": "user", "content": results})
        raise ProviderFailure(f"no valid submission within {self.max_turns} model call(s) (diagnosis.max_tool_turns)", spend)

    async def _call(
        self,
        request: DiagnosisRequest,
        system: str,
        messages: list[dict[str, Any]],
        tool_choice: dict[str, str],
        spend: Spend,
    ) -> Any:
        spent = self.ledger.spent_since(self.clock() - HOUR)
        if spent >= self.token_budget:
            raise ProviderFailure(
                f"the hourly token budget is spent ({spent} of {self.token_budget} tokens in the last hour; "
                "diagnosis.token_budget_per_hour)",
                spend,
            )
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.client.messages.create(
                    model=self.model,
                    max_tokens=self.max_tokens,
                    system=system,
                    messages=messages,  # type: ignore[arg-type]
                    tools=self.tool_definitions,  # type: ignore[arg-type]
                    tool_choice=tool_choice,  # type: ignore[arg-type]
                )
        except TimeoutError:
            raise ProviderFailure(
                f"no answer from the Messages API within {format_duration(self.timeout)} (diagnosis.timeout)", spend
            ) from None
        except anthropic.APIStatusError as exc:
            retried = f" after {MAX_RETRIES} retries" if _retryable(exc.status_code) else ""
            detail = one_line(exc.api_message or str(exc))
            kind = f" {exc.type}" if exc.type else ""
            raise ProviderFailure(f"the Messages API answered HTTP {exc.status_code}{kind}{retried}: {detail}", spend) from None
        except anthropic.APITimeoutError:
            raise ProviderFailure(
                f"the Messages API timed out after {MAX_RETRIES} retries (diagnosis.timeout "
                f"{format_duration(self.timeout)})",
                spend,
            ) from None
        except anthropic.APIConnectionError as exc:
            raise ProviderFailure(f"cannot reach the Messages API after {MAX_RETRIES} retries: {one_line(str(exc))}", spend) from None
        except anthropic.AnthropicError as exc:
            raise ProviderFailure(f"the Messages API call failed: {type(exc).__name__}: {one_line(str(exc))}", spend) from None
        spend.model_calls += 1
        usage = response.usage
        spend.input_tokens += usage.input_tokens
        spend.output_tokens += usage.output_tokens
        self.ledger.record(
            request.ticket.id, "claude", response.model or self.model, usage.input_tokens, usage.output_tokens, self.clock()
        )
        if response.stop_reason == "refusal":
            raise ProviderFailure("the model refused to answer (stop_reason refusal)", spend)
        return response


def _retryable(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def _block(block: Any) -> dict[str, Any]:
    if block.type == "text":
        return {"type": "text", "text": block.text}
    return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}


def _result(tool_use_id: str, text: str, *, is_error: bool) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": text, "is_error": is_error}


def _problems(exc: ValidationError, limit: int = 5) -> str:
    errors = exc.errors(include_url=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in errors[:limit]]
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more
