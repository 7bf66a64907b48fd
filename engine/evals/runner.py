"""`opctl eval PATH...`: find eval files, reach each case's moment of diagnosis, make the runs,
score them, and sum it all up. `run_eval` never prints (the CLI prints `EvalResult`)."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.config.problems import Problem
from engine.config.files import files_of_kind
from engine.diagnose import Diagnosis
from engine.evals.load import CaseSpec, LoadedEvals, is_eval_file, load_evals
from engine.evals.moments import frozen_moment, live_moment
from engine.evals.recording import Recording, read_recording, recording_path, write_recording
from engine.evals.report import CaseReport, EvalReport, case_report, eval_report
from engine.evals.runs import At, MomentObserve, Run, Settings, run_once
from engine.evals.score import score
from engine.lab.timeline import TimelineEntry
from engine.store import Store

Progress = Callable[[str], None]


@dataclass(frozen=True)
class EvalResult:
    report: EvalReport | None = None
    problems: tuple[Problem, ...] = ()
    usage_error: str | None = None
    written: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def exit_code(self) -> int:
        if self.usage_error is not None:
            return 2
        return 1 if self.problems else 0


def eval_files(paths: Iterable[str | Path]) -> tuple[list[Path], str | None]:
    """Eval files given (each must be one) and the eval files under directories."""
    files, error = files_of_kind(paths, lambda p: is_eval_file(p, {}), "eval", "top-level `config:` and `evals:`")
    return list(dict.fromkeys(p.resolve() for p in files)), error


def run_eval(
    paths: Iterable[str | Path],
    settings: Settings,
    *,
    run_regex: str | None = None,
    env: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    timeline: Callable[[TimelineEntry], None] | None = None,
) -> EvalResult:
    env = dict(os.environ if env is None else env)
    try:
        pattern = re.compile(run_regex) if run_regex is not None else None
    except re.error as exc:
        return EvalResult(usage_error=f"--run {run_regex!r} is not a regular expression: {exc}")
    files, error = eval_files(paths)
    if error is not None:
        return EvalResult(usage_error=error)
    problems: list[Problem] = []
    loaded_files: list[LoadedEvals] = []
    for file in files:
        found, loaded = load_evals(file, env)
        problems.extend(found)
        if loaded is not None:
            loaded_files.append(loaded)
    if problems:
        return EvalResult(problems=tuple(problems))
    chosen = [(f, c) for f in loaded_files for c in f.cases if pattern is None or pattern.search(c.ident)]
    if not chosen:
        return EvalResult(usage_error=f"no case matches --run {run_regex!r}")
    recordings: dict[str, list[Recording | None]] = {}
    moments: dict[str, Recording | None] = {}
    if settings.provider == "replay":
        assert settings.replay_from is not None
        for _, case in chosen:
            loaded_recordings, bad = _recordings(settings.replay_from, case, settings.repeat)
            problems.extend(bad)
            recordings[case.ident] = loaded_recordings
    elif settings.moments_from is not None:
        for _, case in chosen:
            if case.case.kind == "live":
                loaded_recordings, bad = _recordings(settings.moments_from, case, 1)
                problems.extend(bad)
                moments[case.ident] = loaded_recordings[0]
    if problems:
        return EvalResult(problems=tuple(problems))
    reports: list[CaseReport] = []
    written: list[Path] = []
    for evals, case in chosen:
        if progress is not None:
            progress(f"{case.ident} ({case.case.kind}) ...")
        runs, failure, paths_written = _run_case(evals, case, settings, recordings.get(case.ident), moments.get(case.ident),
                                                 env, timeline)
        written.extend(paths_written)
        scores = [score(case.case.expect, r.diagnosis, r.gate) if r.diagnosis is not None and r.error is None else None
                  for r in runs]
        reports.append(case_report(case, runs, scores, failure, evals.loaded.config.diagnosis.price_table))
        if progress is not None:
            progress(reports[-1].line())
    origins = sorted({r.origin.kind for rs in recordings.values() for r in rs if r is not None})
    return EvalResult(report=eval_report(reports, settings, origins), written=tuple(written))


def _recordings(root: Path, case: CaseSpec, repeat: int) -> tuple[list[Recording | None], list[Problem]]:
    found: list[Recording | None] = []
    problems: list[Problem] = []
    for index in range(1, repeat + 1):
        path = recording_path(root, case.ident, index)
        if not path.is_file():
            found.append(None)
            continue
        recording = read_recording(path)
        if isinstance(recording, Problem):
            problems.append(recording)
            found.append(None)
        elif recording.case != case.ident or recording.repeat != index:
            problems.append(Problem(str(path), 1, 1, ("case",), f"this recording is of {recording.case} #{recording.repeat}, "
                                                                  f"not of {case.ident} #{index}"))
            found.append(None)
        else:
            found.append(recording)
    return found, problems


def _run_case(
    evals: LoadedEvals,
    case: CaseSpec,
    settings: Settings,
    recordings: list[Recording | None] | None,
    moment: Recording | None,
    env: Mapping[str, str],
    timeline: Callable[[TimelineEntry], None] | None,
) -> tuple[list[Run], str | None, list[Path]]:
    runs: list[Run] = []
    written: list[Path] = []

    async def on_moment(at: At) -> Diagnosis | None:
        for repeat in range(1, settings.repeat + 1):
            recording = None
            if recordings is not None:
                recording = recordings[repeat - 1]
                if recording is None:
                    missing = recording_path(settings.replay_from or Path("."), case.ident, repeat)
                    runs.append(Run(repeat, "replay", None, None, 0.0, error=f"no recording {missing}; record it with --record"))
                    continue
            run, made = await run_once(at, settings, repeat, recording)
            runs.append(run)
            if made is not None and settings.record is not None:
                written.append(write_recording(settings.record, made, at.loaded.secrets))
        return next((r.diagnosis for r in runs if r.diagnosis is not None), None)

    if case.case.kind == "live" and (recordings is not None or settings.moments_from is not None):
        first = moment if recordings is None else next((r for r in recordings if r is not None), None)
        if first is None:
            missing = recording_path(settings.replay_from or settings.moments_from or Path("."), case.ident, 1)
            return [], f"no recording {missing}; record it with --record", written
        failure = asyncio.run(_replayed_moment(evals, case, first, on_moment))
    elif case.case.kind == "live":
        failure = live_moment(case, evals.config_path, on_moment, env=env, emit=timeline or (lambda entry: None))
    else:
        failure = asyncio.run(frozen_moment(case, evals.loaded, on_moment))
    return runs, failure, written


async def _replayed_moment(evals: LoadedEvals, case: CaseSpec, recording: Recording, on_moment: Callable[[At], object]) -> str | None:
    """A live case from its recorded moment: no lab; a fresh store for the gate."""
    invariant = evals.loaded.config.invariant(recording.moment.invariant, recording.moment.key)
    if invariant is None:
        return f"the recorded moment is of invariant {recording.moment.invariant!r}, which the config no longer declares"
    with tempfile.TemporaryDirectory(prefix="opctl-eval-") as tmp:
        store = Store(Path(tmp) / "eval.db")
        try:
            at = At(case, evals.loaded, recording.moment.request(invariant), recording.moment, store,
                    MomentObserve(recording.moment.observations))
            await on_moment(at)  # type: ignore[misc]
        finally:
            store.close()
    return None
