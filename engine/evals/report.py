"""Per-case and total figures of an eval, and their text and JSON forms.

Accuracy is the share of runs that are correct (engine.evals.score), action accuracy the share
whose actions are acceptable; a run that could not be made or scored counts as wrong on both.
Latency is the wall time of one diagnosis (a replay reports the recorded one); p95 is the
nearest-rank 95th percentile over runs. Agreement (with `--repeat`) is, per case, the share of
runs whose outcome (correct, actions acceptable, the actions recommended) is the most common
one; in total, the mean over cases. Cost comes from the config's price table; it is null when
tokens went to a model without a price.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.config.models import Price
from engine.evals.load import CaseSpec
from engine.evals.pricing import cost_usd
from engine.evals.runs import Run, Settings
from engine.evals.score import Score


@dataclass(frozen=True)
class CaseReport:
    ident: str
    kind: str
    tags: tuple[str, ...]
    runs: tuple[Run, ...]
    scores: tuple[Score | None, ...]
    failure: str | None  # the moment of diagnosis was never reached
    costs: tuple[float | None, ...]

    @property
    def correct(self) -> int:
        return sum(1 for s in self.scores if s is not None and s.correct)

    @property
    def actions_ok(self) -> int:
        return sum(1 for s in self.scores if s is not None and s.actions_ok)

    @property
    def errors(self) -> list[str]:
        out = [self.failure] if self.failure else []
        return out + [f"run {r.repeat}: {r.error}" for r in self.runs if r.error]

    @property
    def size(self) -> int:
        """Runs that count: a case whose moment never came counts as one wrong run."""
        return max(len(self.runs), 1)

    def agreement(self) -> float | None:
        if len(self.runs) < 2:
            return None
        outcomes = Counter(_outcome(r, s) for r, s in zip(self.runs, self.scores))
        return outcomes.most_common(1)[0][1] / len(self.runs)

    def as_json(self) -> dict[str, Any]:
        latencies = [r.latency_s for r in self.runs]
        first_wrong = next((s for s in self.scores if s is not None and not s.correct), None)
        return {
            "case": self.ident,
            "kind": self.kind,
            "tags": list(self.tags),
            "runs": len(self.runs),
            "accuracy": _ratio(self.correct, self.size),
            "action_accuracy": _ratio(self.actions_ok, self.size),
            "latency_mean_s": _mean(latencies),
            "latency_p95_s": _p95(latencies),
            "input_tokens": sum(_tokens(r)[0] for r in self.runs),
            "output_tokens": sum(_tokens(r)[1] for r in self.runs),
            "cost_usd": _sum_cost(self.costs),
            "tool_calls": sum(r.diagnosis.tool_calls for r in self.runs if r.diagnosis is not None),
            "agreement": _round(self.agreement()),
            "answered_by": sorted({r.provider for r in self.runs}),
            "fallbacks": [r.diagnosis.fallback_reason for r in self.runs if r.diagnosis is not None and r.diagnosis.fallback_reason],
            "wrong": None if first_wrong is None else first_wrong.as_json(),
            "errors": self.errors,
            "judge": _judge_json([r for r in self.runs if r.verdict is not None]),
        }

    def line(self) -> str:
        status = "ok  " if self.correct == self.size and not self.errors else "FAIL"
        text = f"{status} {self.ident:<58} correct {self.correct}/{self.size}  actions {self.actions_ok}/{self.size}"
        if self.runs:
            text += f"  {_mean([r.latency_s for r in self.runs]):.3f}s"
        detail = self.errors[:1] or ([] if self.correct == self.size else [_why(self.scores)])
        return text + (f"\n     {detail[0]}" if detail and detail[0] else "")


@dataclass(frozen=True)
class EvalReport:
    cases: tuple[CaseReport, ...]
    provider: str
    model: str | None
    repeat: int
    judge_model: str | None
    recording_origins: tuple[str, ...]

    def totals(self) -> dict[str, Any]:
        runs = [r for c in self.cases for r in c.runs]
        size = sum(c.size for c in self.cases)
        latencies = [r.latency_s for r in runs]
        agreements = [a for a in (c.agreement() for c in self.cases) if a is not None]
        models = sorted({r.model for r in runs if r.model})
        by: dict[str, dict[str, Any]] = {}
        for case in self.cases:
            for group in (f"subject:{case.ident.split('/')[0]}", f"kind:{case.kind}", *(f"tag:{t}" for t in case.tags)):
                entry = by.setdefault(group, {"cases": 0, "runs": 0, "correct": 0})
                entry["cases"] += 1
                entry["runs"] += case.size
                entry["correct"] += case.correct
        judged = [r for r in runs if r.verdict is not None]
        return {
            "cases": len(self.cases),
            "runs": len(runs),
            "accuracy": _ratio(sum(c.correct for c in self.cases), size),
            "action_accuracy": _ratio(sum(c.actions_ok for c in self.cases), size),
            "latency_mean_s": _mean(latencies),
            "latency_p95_s": _p95(latencies),
            "input_tokens": sum(_tokens(r)[0] for r in runs),
            "output_tokens": sum(_tokens(r)[1] for r in runs),
            "cost_usd": _sum_cost([c for case in self.cases for c in case.costs]),
            "tool_calls": sum(r.diagnosis.tool_calls for r in runs if r.diagnosis is not None),
            "agreement": _round(sum(agreements) / len(agreements)) if agreements else None,
            "errors": sum(len(c.errors) for c in self.cases),
            "provider": self.provider,
            "model": self.model if self.model is not None else (models[0] if len(models) == 1 else models or None),
            "repeat": self.repeat,
            "recordings": list(self.recording_origins) or None,
            "by": {k: {**v, "accuracy": _ratio(v["correct"], v["runs"])} for k, v in sorted(by.items())},
            "judge": None if self.judge_model is None else {"model": self.judge_model, **(_judge_json(judged) or {})},
        }

    def last_line(self) -> str:
        return json.dumps(self.totals(), sort_keys=False)

    def text(self) -> str:
        totals = self.totals()
        lines = [c.line() for c in self.cases]
        cost = "n/a" if totals["cost_usd"] is None else f"${totals['cost_usd']:.4f}"
        lines.append(
            f"{totals['cases']} case(s), {totals['runs']} run(s) with {self.provider}: accuracy {totals['accuracy']:.3f}, "
            f"action accuracy {totals['action_accuracy']:.3f}, latency mean {totals['latency_mean_s']}s p95 {totals['latency_p95_s']}s, "
            f"tokens {totals['input_tokens']} in / {totals['output_tokens']} out, cost {cost}, {totals['tool_calls']} tool call(s)"
            + ("" if totals["agreement"] is None else f", agreement {totals['agreement']}")
            + (f", {totals['errors']} error(s)" if totals["errors"] else "")
        )
        if totals["judge"] is not None:
            lines.append(f"judge {self.judge_model} (reported apart; the score above is the deterministic one): {totals['judge']}")
        return "\n".join(lines)


def case_report(case: CaseSpec, runs: Sequence[Run], scores: Sequence[Score | None], failure: str | None,
                prices: Mapping[str, Price]) -> CaseReport:
    costs = tuple(cost_usd(prices, r.model, *_tokens(r)) for r in runs)
    return CaseReport(case.ident, case.case.kind, tuple(case.case.tags), tuple(runs), tuple(scores), failure, costs)


def eval_report(cases: Sequence[CaseReport], settings: Settings, origins: Sequence[str]) -> EvalReport:
    return EvalReport(tuple(cases), settings.provider, settings.model, settings.repeat, settings.judge_model, tuple(origins))


def _outcome(run: Run, score: Score | None) -> tuple[Any, ...]:
    actions = () if run.diagnosis is None else tuple(
        (a.action, json.dumps(a.params, sort_keys=True)) for a in run.diagnosis.recommended_actions)
    return (score is not None and score.correct, score is not None and score.actions_ok, actions)


def _why(scores: Sequence[Score | None]) -> str:
    wrong = next((s for s in scores if s is not None and not s.correct), None)
    if wrong is None:
        return ""
    parts = [f"missing: {', '.join(wrong.missing)}"] if wrong.missing else []
    parts += [f"forbidden: {', '.join(wrong.violated)}"] if wrong.violated else []
    parts += list(wrong.action_notes)
    return "; ".join(parts)


def _tokens(run: Run) -> tuple[int, int]:
    if run.diagnosis is None:
        return 0, 0
    return run.diagnosis.input_tokens, run.diagnosis.output_tokens


def _judge_json(judged: Sequence[Run]) -> dict[str, Any] | None:
    if not judged:
        return None
    verdicts = [r.verdict for r in judged if r.verdict is not None]
    scored = [v for v in verdicts if v.score is not None]
    return {
        "runs": len(verdicts),
        "accuracy": _ratio(sum(1 for v in scored if v.correct), len(verdicts)),
        "score_mean": _mean([v.score for v in scored if v.score is not None]),
        "input_tokens": sum(v.input_tokens for v in verdicts),
        "output_tokens": sum(v.output_tokens for v in verdicts),
        "unanswered": sum(1 for v in verdicts if v.score is None),
    }


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _p95(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)], 4)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _sum_cost(costs: Sequence[float | None]) -> float | None:
    if any(c is None for c in costs):
        return None
    return round(sum(c for c in costs if c is not None), 6)
