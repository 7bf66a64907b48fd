"""`opctl test`: unit tests for configs over virtual time, and property tests of invariants.

Public surface: `run_tests` (runner), `TestRunResult`, `validate_test_file`, `is_test_file`,
`is_test_document` (how `opctl validate` tells a test file from a config).
"""

from __future__ import annotations

from engine.testing.load import is_test_document, is_test_file, validate_test_file
from engine.testing.runner import TestRunResult, run_tests

__all__ = ["TestRunResult", "is_test_document", "is_test_file", "run_tests", "validate_test_file"]
