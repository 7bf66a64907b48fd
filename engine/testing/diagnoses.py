"""The diagnoser of an `opctl test` run: recorded diagnoses first, the runbook otherwise; no model.

A test file's `diagnoses:` become a replay file (engine.diagnose.replay's format) in the run's
temporary directory, and the config's diagnosis provider is switched to `replay` for the run:
the first recorded diagnosis matching a ticket's invariant (and key) answers, and the runbook
answers tickets no recording matches (the replay provider's own fallback). Without recordings
the provider is `runbook`, unless the config itself replays a file. Claude is never called: a
test must not depend on a network, a key or a model's mood.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.act import StoreDiagnosisCache, StoreTokenLedger
from engine.config.validate import LoadedConfig
from engine.diagnose import Diagnoser
from engine.diagnose.tools import Observe
from engine.store import Store
from engine.testing.model import RecordedDiagnosis

REPLAY_FILE = "recorded-diagnoses.json"


def replay_entries(recorded: Sequence[RecordedDiagnosis]) -> list[dict[str, object]]:
    """The test file's recorded diagnoses as entries of a `diagnosis.replay_file`, in order."""
    entries: list[dict[str, object]] = []
    for item in recorded:
        match: dict[str, str] = {"invariant": item.invariant}
        if item.key is not None:
            match["key"] = item.key
        entry: dict[str, object] = {"match": match, "diagnosis": item.diagnosis}
        if item.model is not None:
            entry["model"] = item.model
        entries.append(entry)
    return entries


def offline_config(loaded: LoadedConfig, recorded: Sequence[RecordedDiagnosis], workdir: Path) -> LoadedConfig:
    """`loaded` with a diagnosis provider that answers offline: replay (recordings) or runbook."""
    settings = loaded.config.diagnosis
    if recorded:
        file = workdir / REPLAY_FILE
        file.write_text(json.dumps(replay_entries(recorded), indent=2), encoding="utf-8")
        # an absolute path: LoadedConfig.resolve joins it to the config's directory unchanged
        update: dict[str, object] = {"provider": "replay", "replay_file": str(file)}
    elif settings.provider == "replay":
        return loaded
    else:
        update = {"provider": "runbook"}
    diagnosis = settings.model_copy(update=update)
    return dataclasses.replace(loaded, config=loaded.config.model_copy(update={"diagnosis": diagnosis}))


def offline_diagnoser(
    loaded: LoadedConfig,
    recorded: Sequence[RecordedDiagnosis],
    *,
    workdir: Path,
    store: Store,
    observe: Observe,
    clock: Callable[[], float],
) -> Diagnoser:
    """A Diagnoser over `offline_config(...)`, caching in the run's store; an empty environment,
    so no API key can turn `auto` into a model call."""
    return Diagnoser(
        offline_config(loaded, recorded, workdir),
        observe=observe,
        cache=StoreDiagnosisCache(store, clock=clock),
        ledger=StoreTokenLedger(store),
        clock=clock,
        env={},
    )
