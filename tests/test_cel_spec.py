"""The engine's CEL against the official cel-spec conformance suite (tests/cel_spec/testdata).

Each test of the core files, and of the strings and math extensions, is compiled and evaluated
the way the engine does it (`compile_expr(...).evaluate(...)`: the fast path where it applies,
the library for the rest). Tests the engine cannot express (protobuf messages and enums,
containers, unknowns) are skipped by the runner with a reason.

Measured on these files with the same skips (pass / wrong value / missing error / unexpected
error / crash, core files):

  engine before (common-expression-language 0.10 + fast path)  1031 / 7 / 12 / 78 / 2
  common-expression-language 0.10 alone                         1030 / 7 / 12 / 78 / 3
  cel-python 0.5.0 alone                                          908 / 61 / 7 / 154 / -
  cel-expr-python 0.1.3 alone                                    1088 / 0 / 1 / 38 / 1
  engine now (cel-expr-python 0.1.3 + fast path)                 1092 / 0 / 0 / 38 / 0

The 38 unexpected errors are the two-variable comprehensions of macros2 (`exists(i, v, ...)`,
`transformList`, ...), which cel-expr-python parses but does not evaluate: an evaluation error,
never a wrong value, and `opctl validate` refuses them in a config. Strings and math extensions: 412 of 412 now (67 before, the rest unsupported).
"""

from __future__ import annotations

from engine.errors import OpctlError
from engine.expr import compile_expr
from tests.cel_spec import runner


def _evaluate(expr: str, bindings: dict) -> object:
    return compile_expr(expr).evaluate(bindings)


def _run(files: tuple[str, ...]) -> list[runner.Outcome]:
    return runner.run(files, _evaluate, (OpctlError,))


def test_core_files_have_no_wrong_value_missing_error_or_crash() -> None:
    outcomes = _run(runner.CORE_FILES)
    counts = runner.tally(outcomes)
    problems = [line for line in runner.summary(outcomes) if not line.startswith("unexpected_error")]
    assert problems == []
    assert counts["pass"] == 1092, counts
    unexpected = [o for o in outcomes if o.kind == "unexpected_error"]
    assert len(unexpected) == 38 and all(o.case_id.startswith("macros2/") for o in unexpected)


def test_strings_and_math_extensions_pass() -> None:
    counts = runner.tally(_run(runner.EXTENSION_FILES))
    assert counts == {"pass": 412, "wrong": 0, "missing_error": 0, "unexpected_error": 0, "crash": 0, "skip": 3}


def test_the_runner_catches_a_wrong_evaluator() -> None:
    # the harness must be able to fail: an evaluator that answers `true` to everything
    outcomes = runner.run(("basic",), lambda expr, bindings: True, (OpctlError,))
    counts = runner.tally(outcomes)
    assert counts["wrong"] > 10 and counts["missing_error"] > 0
