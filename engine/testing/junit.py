"""JUnit XML for CI: one <testsuite> per test file, one <testcase> per case or property."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from engine.testing.scenario import CaseResult


def junit_xml(results: Sequence[CaseResult]) -> str:
    root = ET.Element("testsuites", name="opctl test")
    by_file: dict[str, list[CaseResult]] = {}
    for result in results:
        by_file.setdefault(result.file, []).append(result)
    total = failed = 0
    for file, cases in by_file.items():
        failures = sum(1 for c in cases if not c.passed)
        suite = ET.SubElement(
            root, "testsuite", name=file, tests=str(len(cases)), failures=str(failures), errors="0",
            time=f"{sum(c.duration_s for c in cases):.3f}",
        )
        for case in cases:
            element = ET.SubElement(
                suite, "testcase", name=case.name, classname=f"{Path(file).stem}.{case.kind}", time=f"{case.duration_s:.3f}"
            )
            if not case.passed:
                failure = ET.SubElement(element, "failure", message=case.failures[0].splitlines()[0])
                failure.text = "\n".join(case.failures)
        total += len(cases)
        failed += failures
    root.set("tests", str(total))
    root.set("failures", str(failed))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
