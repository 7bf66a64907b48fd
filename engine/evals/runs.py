"""One eval run: the evaluated provider diagnoses the case's ticket at the moment of diagnosis,
and the real action gate checks every recommended action at that same moment.

`At` is that moment: the request the engine built, the store and the observe function the gate
and the model's tools use. Providers:

- `runbook`: the config's runbooks (`engine.diagnose.runbook`), offline;
- `claude`: the real claude provider through the real anthropic client, its traffic kept by a
  `RecordingTransport` (or by a transport a test or `engine.evals.authored` injects);
- `replay`: a recording of either, replayed: the same request, the recorded observations (for
  live cases) and the recorded Messages API responses, which answer only the recorded requests.

Every run gets its own token ledger (an eval is a deliberate spend: the hourly budget applies
within one diagnosis, not across the whole eval) and no diagnosis cache.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from engine.act import ActionGate, Refusal
from engine.config.validate import LoadedConfig
from engine.diagnose import Diagnoser, Diagnosis, DiagnosisRequest
from engine.diagnose.tools import Observe
from engine.evals.judge import Verdict, judge
from engine.evals.load import CaseSpec
from engine.evals.recording import Exchange, Judged, Moment, Origin, RecordedObservation, Recording
from engine.evals.score import GateOutcome
from engine.observe import ObservationResult
from engine.observe.values import one_line
from engine.store import Store

if TYPE_CHECKING:
    import httpx2

ProviderName = Literal["runbook", "claude", "replay"]
API_KEY_VARIABLE = "ANTHROPIC_API_KEY"


@dataclass(frozen=True)
class At:
    """The moment of diagnosis of one case."""

    case: CaseSpec
    loaded: LoadedConfig
    request: DiagnosisRequest
    moment: Moment
    store: Store
    observe: Observe


@dataclass(frozen=True)
class Run:
    repeat: int
    provider: str  # who answered (a failed claude call answered by the runbook says runbook)
    model: str | None
    diagnosis: Diagnosis | None
    latency_s: float
    gate: tuple[GateOutcome, ...] = ()
    error: str | None = None  # the run could not be scored (a stale or missing recording, ...)
    verdict: Verdict | None = None


@dataclass
class Settings:
    """How the runs of an eval are made (the options of `opctl eval`)."""

    provider: ProviderName = "runbook"
    model: str | None = None
    repeat: int = 1
    record: Path | None = None
    replay_from: Path | None = None
    # Live cases from the moments recorded under this directory (no lab), diagnosed afresh.
    moments_from: Path | None = None
    judge_model: str | None = None
    api_key: str | None = None
    origin: Origin = field(default_factory=lambda: Origin(kind="recorded"))
    # The transport under the anthropic client when nothing is replayed: None = the network.
    # engine.evals.authored and the tests inject one that answers scripted responses; it is
    # called with the case, the repeat and the purpose ("diagnosis" or "judge").
    inner_transport: Callable[[CaseSpec, int, str], httpx2.AsyncBaseTransport] | None = None


class RunLedger:
    """The TokenLedger of one run: the budget sees only this diagnosis' spend."""

    def __init__(self) -> None:
        self.spent = 0

    def spent_since(self, since: float) -> int:
        return self.spent

    def record(self, ticket_id: int, provider: str, model: str | None, input_tokens: int, output_tokens: int, at: float) -> None:
        self.spent += input_tokens + output_tokens


class NoCache:
    def get(self, fingerprint: str) -> None:
        return None

    def put(self, fingerprint: str, diagnosis: Diagnosis) -> None:
        return None


class ObservationLog:
    """Wraps an observe function and keeps what every call returned (for recordings)."""

    def __init__(self, observe: Observe) -> None:
        self.inner = observe
        self.calls: list[RecordedObservation] = []

    async def __call__(self, name: str) -> ObservationResult:
        result = await self.inner(name)
        self.calls.append(RecordedObservation(name=name, ok=result.ok, value=result.value, error=result.error))
        return result


class RecordedObserve:
    """Serves recorded observation results by name, in recorded order (replayed live cases)."""

    def __init__(self, recorded: list[RecordedObservation]) -> None:
        self.pending = list(recorded)

    async def __call__(self, name: str) -> ObservationResult:
        for index, entry in enumerate(self.pending):
            if entry.name == name:
                return self.pending.pop(index).result()
        return ObservationResult(name, False, None, "replay: this observation was not re-run when the case was recorded", 0.0, "recording")


class MomentObserve:
    """Serves the values an observation had at a recorded moment (a live case diagnosed afresh
    from its recorded moment: a tool re-run sees the moment, not a later state)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    async def __call__(self, name: str) -> ObservationResult:
        if name in self.values and self.values[name] is not None:
            return ObservationResult(name, True, self.values[name], None, 0.0, "moment")
        return ObservationResult(name, False, None, "this observation failed at the recorded moment", 0.0, "moment")


def with_provider(loaded: LoadedConfig, provider: str, model: str | None) -> LoadedConfig:
    """`loaded` with its diagnosis provider (and model) replaced."""
    update: dict[str, Any] = {"provider": provider}
    if model is not None:
        update["model"] = model
    diagnosis = loaded.config.diagnosis.model_copy(update=update)
    return dataclasses.replace(loaded, config=loaded.config.model_copy(update={"diagnosis": diagnosis}))


async def gate_outcomes(at: At, diagnosis: Diagnosis, observe: Observe) -> tuple[GateOutcome, ...]:
    """The real gate's decision on every recommended action, at the moment of diagnosis."""
    gate = ActionGate(at.loaded.config, at.store, observe)
    outcomes = []
    for recommended in diagnosis.recommended_actions:
        decision = await gate.check(
            ticket=at.request.ticket, firing=at.moment.firing, action_name=recommended.action,
            params=recommended.params, now=at.moment.now, prev=at.moment.prev,
        )
        if isinstance(decision, Refusal):
            outcomes.append(GateOutcome(recommended.action, dict(recommended.params), decision.gate, decision.reason))
        else:
            outcomes.append(GateOutcome(recommended.action, dict(recommended.params)))
    return tuple(outcomes)


async def run_once(at: At, settings: Settings, repeat: int, recording: Recording | None = None) -> tuple[Run, Recording | None]:
    """One diagnosis at the moment, gated and (optionally) judged; with the recording it makes.

    `recording` is what a replay replays (None for runbook and claude)."""
    provider = recording.provider if recording is not None else settings.provider
    model = (recording.model if recording is not None else settings.model) if provider == "claude" else None
    observe: Observe = at.observe
    if recording is not None and at.case.case.kind == "live":
        observe = RecordedObserve(list(recording.observations))
    log = ObservationLog(observe)
    transport: Any = None
    client = None
    if provider == "claude":
        client, transport = _client(settings, recording.exchanges if recording is not None else None, at.case, repeat, "diagnosis")
    loaded = with_provider(at.loaded, provider, model)
    diagnoser = Diagnoser(
        loaded, observe=log, cache=NoCache(), ledger=RunLedger(), clock=lambda: at.moment.now,
        anthropic_client=client, env={},
    )
    started = time.perf_counter()
    try:
        diagnosis = await diagnoser.diagnose(at.request, mode=at.moment.mode)
        latency = time.perf_counter() - started
        outcomes = await gate_outcomes(at, diagnosis, log)
    except Exception as exc:  # a defect in one run must not stop the eval; it is reported
        await _close(client)
        return Run(repeat, provider, model, None, time.perf_counter() - started, error=f"{type(exc).__name__}: {one_line(str(exc))}"), None
    judged: Judged | None = None
    verdict = None
    if settings.judge_model is not None:
        verdict, judged = await _judge(at, settings, diagnosis, recording, repeat)
    await _close(client)
    stale = getattr(transport, "stale", None)
    if recording is not None:
        latency = recording.latency_s
    made = None
    if recording is None:
        made = Recording(
            format=1, origin=settings.origin, case=at.case.ident, repeat=repeat, provider=provider,
            model=diagnosis.model or model, moment=at.moment, observations=log.calls,
            exchanges=list(getattr(transport, "exchanges", [])), latency_s=latency, judge=judged,
        )
    error = f"the recording is stale: {stale}; re-record it (see `opctl eval --help`)" if stale else None
    return Run(repeat, diagnosis.provider, diagnosis.model, diagnosis, latency, outcomes, error, verdict), made


def _client(settings: Settings, replay: list[Exchange] | None, case: CaseSpec, repeat: int, purpose: str) -> tuple[Any, Any]:
    import anthropic
    import httpx2

    from engine.evals.exchanges import RecordingTransport, ReplayTransport

    transport: Any
    if replay is not None:
        transport = ReplayTransport(replay)
    else:
        inner = settings.inner_transport(case, repeat, purpose) if settings.inner_transport is not None else httpx2.AsyncHTTPTransport()
        transport = RecordingTransport(inner)
    http = httpx2.AsyncClient(transport=transport)
    key = settings.api_key or "replay-needs-no-key"
    return anthropic.AsyncAnthropic(api_key=key, http_client=http), transport


async def _judge(at: At, settings: Settings, diagnosis: Diagnosis, recording: Recording | None, repeat: int) -> tuple[Verdict, Judged | None]:
    assert settings.judge_model is not None
    replay = None
    if recording is not None:
        if recording.judge is None or recording.judge.model != settings.judge_model:
            return Verdict(None, None, f"the recording holds no verdict of judge {settings.judge_model}"), None
        replay = recording.judge.exchanges
    client, transport = _client(settings, replay, at.case, repeat, "judge")
    try:
        verdict = await judge(client, settings.judge_model, at.case.case.expect, diagnosis)
    finally:
        await _close(client)
    exchanges = list(getattr(transport, "exchanges", []))
    return verdict, Judged(model=settings.judge_model, exchanges=exchanges)


async def _close(client: Any) -> None:
    if client is not None:
        await client.close()


OnMoment = Callable[[At], Awaitable[Diagnosis | None]]
