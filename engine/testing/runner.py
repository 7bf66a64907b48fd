"""`opctl test PATH...`: find test files, load them, run cases (and properties), report.

`run_tests` never prints; the CLI prints `TestRunResult.report_text()` and exits with
`exit_code`: 0 all passed, 1 any failure, 2 a usage error (missing path, no test files, a bad
`--run` regex, an invalid test file or config, an unwritable --junit file).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engine.config.problems import Problem
from engine.testing.junit import junit_xml
from engine.testing.load import is_test_file, load_test
from engine.testing.properties import run_property
from engine.testing.scenario import CaseResult, run_cases


@dataclass(frozen=True)
class TestRunResult:
    __test__ = False  # not a pytest class

    results: tuple[CaseResult, ...] = ()
    problems: tuple[Problem, ...] = ()  # of invalid test files (and their configs)
    usage_error: str | None = None
    files: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)  # e.g. properties skipped without --property

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    @property
    def exit_code(self) -> int:
        if self.usage_error is not None or any(p.severity == "error" for p in self.problems):
            return 2
        return 1 if self.failed else 0

    def report_text(self) -> str:
        lines: list[str] = []
        if self.usage_error is not None:
            return f"error: {self.usage_error}\n"
        for problem in self.problems:
            lines.append(problem.as_text())
        for result in self.results:
            if result.passed:
                continue
            where = f" (at {result.at:g}s)" if result.at is not None else ""
            lines.append(f"FAIL {result.file} :: {result.name}{where}")
            for failure in result.failures:
                lines.extend(f"  {line}" for line in failure.splitlines())
        lines.extend(self.notes)
        passed = sum(1 for r in self.results if r.passed)
        summary = f"{passed} passed, {len(self.failed)} failed in {len(self.files)} file(s)"
        if self.problems:
            summary += f"; {sum(1 for p in self.problems if p.severity == 'error')} problem(s) in test files"
        lines.append(summary)
        return "\n".join(lines) + "\n"


def run_tests(
    paths: Iterable[str | Path],
    *,
    run_regex: str | None = None,
    junit: str | Path | None = None,
    property_mode: bool = False,
) -> TestRunResult:
    try:
        pattern = re.compile(run_regex) if run_regex is not None else None
    except re.error as exc:
        return TestRunResult(usage_error=f"--run {run_regex!r} is not a regular expression: {exc}")
    files, error = _test_files(paths)
    if error is not None:
        return TestRunResult(usage_error=error)
    problems: list[Problem] = []
    results: list[CaseResult] = []
    skipped_properties = 0
    for file in files:
        found, test = load_test(file)
        problems.extend(found)
        if test is None:
            continue
        cases = [c for c in test.spec.cases if pattern is None or pattern.search(c.name)]
        results.extend(asyncio.run(run_cases(test, cases)))
        properties = [p for p in test.spec.properties if pattern is None or pattern.search(p.name)]
        if property_mode:
            results.extend(run_property(test, prop) for prop in properties)
        else:
            skipped_properties += len(properties)
    notes = (f"{skipped_properties} property test(s) not run; add --property to run them",) if skipped_properties else ()
    outcome = TestRunResult(tuple(results), tuple(problems), None, tuple(str(f) for f in files), notes)
    if junit is not None:
        try:
            Path(junit).write_text(junit_xml(outcome.results), encoding="utf-8")
        except OSError as exc:
            return TestRunResult(outcome.results, outcome.problems, f"cannot write --junit {junit}: {exc.strerror or exc}", outcome.files)
    return outcome


def _test_files(paths: Iterable[str | Path]) -> tuple[list[Path], str | None]:
    """Files given (each must be a test file) and the test files under directories."""
    from engine.filekinds import files_of_kind

    return files_of_kind(paths, is_test_file, "test", "top-level `config:` and `cases:` or `properties:`")
