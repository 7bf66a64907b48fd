"""Hand-authored recordings: answers written by a person, passed through the real claude provider.

Where no API key is available, the claude provider's baselines cannot be measured. This module
makes recordings of the same format as `opctl eval --provider claude --record` from answers a
person wrote (an `authored.yaml` beside the recordings), by serving them from a scripted Messages
API under the real anthropic client: the engine builds its real prompts, the model's tool calls
re-run real observations, the submission goes through the real validation and gate. Every such
recording says `origin.kind: hand-authored` and that it measures no model; usage figures are
estimates (a token per 4 characters of the request and of the answer), never counts.

    python -m engine.evals.authored tests/evals/baselines/claude-sonnet-4-6/authored.yaml \
        --moments-from=tests/evals/baselines/runbook subjects/ examples/

Live cases take their moments from recordings of a live run (`--moments-from=DIR`, e.g. the
runbook baseline), so authoring needs no lab; frozen cases run over their fixtures as usual.

`authored.yaml`:

    model: claude-sonnet-4-6
    answers:
      ratelimiter/frozen/node_down:          # subject/file/case
        - [{text: "Let me look at the registry."}, {observe: registry}]   # one turn: text and tool calls
        - [{submit: {summary: ..., root_cause: ..., confidence: 0.9, evidence: [...],
                     alternatives_considered: [...], recommended_actions: [...]}}]
      ratelimiter/live/redis_stall:
        - [{submit: {...}}]
    verdicts: {}                              # optional: case -> {correct, score, reason} for --judge

A case without an answer gets none: its run falls back to the runbook, as a failing model would.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import httpx2
import yaml

from engine.evals.judge import VERDICT_TOOL
from engine.evals.load import CaseSpec
from engine.evals.recording import Origin
from engine.evals.runs import Settings

NOTE = (
    "HAND-AUTHORED, NOT A MEASUREMENT: the model's answers were written by a person and served by a scripted "
    "Messages API through the real anthropic client (no API key was available). The requests are the engine's real "
    "ones; token usage is an estimate (4 characters per token). It exercises replay and the scorer; it says nothing "
    "about any model's quality. Measure for real: ANTHROPIC_API_KEY=... opctl eval subjects/ examples/ "
    "--provider claude --record DIR."
)


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


class ScriptedTransport(httpx2.AsyncBaseTransport):
    """Answers Messages API calls with the authored turns of one case, in order."""

    def __init__(self, ident: str, model: str, turns: list[list[dict[str, Any]]] | None, verdict: dict[str, Any] | None = None) -> None:
        self.ident = ident
        self.model = model
        self.turns = list(turns or [])
        self.verdict = verdict
        self.calls = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.calls += 1
        sent = request.content.decode()
        if self.verdict is not None:
            blocks: list[dict[str, Any]] = [{"type": "tool_use", "id": self._id("verdict"), "name": VERDICT_TOOL, "input": self.verdict}]
        elif self.turns:
            blocks = [self._block(b) for b in self.turns.pop(0)]
        else:
            error = {"type": "error", "error": {"type": "invalid_request_error", "message": f"no authored answer for {self.ident}"}}
            return httpx2.Response(400, json=error)
        body = {
            "id": self._id("msg"), "type": "message", "role": "assistant", "model": self.model, "content": blocks,
            "stop_reason": "tool_use", "stop_sequence": None,
            "usage": {"input_tokens": estimate_tokens(sent), "output_tokens": estimate_tokens(json.dumps(blocks)),
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }
        return httpx2.Response(200, headers={"content-type": "application/json", "request-id": self._id("req")}, json=body)

    def _id(self, kind: str) -> str:
        digest = hashlib.sha256(f"{self.ident}:{self.calls}".encode()).hexdigest()[:20]
        return f"{kind}_authored_{digest}"

    def _block(self, block: dict[str, Any]) -> dict[str, Any]:
        if "text" in block:
            return {"type": "text", "text": str(block["text"])}
        if "observe" in block:
            return {"type": "tool_use", "id": self._id(f"toolu{len(block)}_{block['observe']}"), "name": f"observe_{block['observe']}", "input": {}}
        if "submit" in block:
            return {"type": "tool_use", "id": self._id("toolu_submit"), "name": "submit_diagnosis", "input": block["submit"]}
        raise ValueError(f"{self.ident}: an authored block is text, observe or submit, not {sorted(block)}")


def authored_settings(answers_file: Path, record: Path, moments_from: Path | None = None) -> Settings:
    data = yaml.safe_load(answers_file.read_text(encoding="utf-8"))
    model = str(data["model"])
    answers: dict[str, Any] = data.get("answers") or {}
    verdicts: dict[str, Any] = data.get("verdicts") or {}

    def transport(case: CaseSpec, repeat: int, purpose: str) -> httpx2.AsyncBaseTransport:
        if purpose == "judge":
            return ScriptedTransport(case.ident, model, None, verdicts.get(case.ident))
        return ScriptedTransport(case.ident, model, answers.get(case.ident))

    return Settings(provider="claude", model=model, record=record, api_key="hand-authored", moments_from=moments_from,
                    origin=Origin(kind="hand-authored", note=NOTE), inner_transport=transport)


def main(argv: list[str]) -> int:
    from engine.evals.runner import run_eval

    if len(argv) < 2:
        print(__doc__)
        return 2
    answers = Path(argv[0])
    moments = None
    if argv[1].startswith("--moments-from="):
        moments, argv = Path(argv[1].split("=", 1)[1]), [argv[0], *argv[2:]]
    settings = authored_settings(answers, answers.parent, moments)
    result = run_eval(argv[1:], settings, progress=print)
    for problem in result.problems:
        print(problem.as_text())
    if result.usage_error:
        print(f"error: {result.usage_error}")
    if result.report is not None:
        print(result.report.last_line())
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
