"""The replay provider: recorded diagnoses from `diagnosis.replay_file`, for tests and `opctl test`.

The file is a JSON list of entries; the first entry whose `match` fits the ticket answers:

    [
      {"match": {"invariant": "node_heartbeat", "key": "n2"},
       "diagnosis": {"summary": "...", "root_cause": "...", "confidence": 0.9,
                     "evidence": ["..."], "alternatives_considered": [],
                     "recommended_actions": [{"action": "deregister_node",
                                              "params": {"node_id": "n2"}, "reason": "..."}]}},
      {"diagnosis": {...}}
    ]

`match` and each of its keys are optional (absent = any). `diagnosis` has exactly the fields a
model submits through `submit_diagnosis`; `model` (optional) is copied to the result. It is a
list of diagnoses, not of Messages API responses: recorded API traffic belongs to the claude
provider's tests, which replay it through the real client.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from engine.diagnose.types import Diagnosis, DiagnosisRequest, Submission
from engine.errors import ConfigError


class ReplayMatch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    invariant: str | None = None
    key: str | None = None

    def fits(self, request: DiagnosisRequest) -> bool:
        return (self.invariant is None or self.invariant == request.invariant.name) and (
            self.key is None or self.key == request.key
        )


class ReplayEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    match: ReplayMatch = ReplayMatch()
    model: str | None = None
    diagnosis: Submission


def load_replay(path: Path) -> tuple[ReplayEntry, ...]:
    """The entries of a replay file; ConfigError naming the file and the entry when it is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the replay file {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"the replay file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise ConfigError(f"the replay file {path} must hold a JSON list of {{match, diagnosis}} entries")
    entries = []
    for index, raw in enumerate(data):
        try:
            entries.append(ReplayEntry.model_validate(raw))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "the entry"
            raise ConfigError(f"the replay file {path}, entry {index}: {where}: {first['msg']}") from None
    return tuple(entries)


def replay_diagnosis(entries: tuple[ReplayEntry, ...], request: DiagnosisRequest) -> Diagnosis | None:
    """The first fitting entry as a Diagnosis (provider `replay`), or None when none fits."""
    for entry in entries:
        if entry.match.fits(request):
            return Diagnosis(**entry.diagnosis.model_dump(), provider="replay", model=entry.model)
    return None
