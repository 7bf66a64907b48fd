"""Problems found in a config: where they are and what is wrong."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]
DocPath = tuple[str | int, ...]


def dotted(path: DocPath) -> str:
    """`("invariants", 0, "expr")` -> `invariants.0.expr`; the whole document is `<document>`."""
    return ".".join(str(p) for p in path) if path else "<document>"


@dataclass(frozen=True)
class Problem:
    """One problem at one place. Line and column are 1-based; 0 means unknown."""

    file: str
    line: int
    column: int
    path: DocPath
    message: str
    severity: Severity = "error"

    def as_text(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message} (at {dotted(self.path)})"

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": dotted(self.path),
            "severity": self.severity,
            "message": self.message,
        }


def shorten(text: str, limit: int = 40) -> str:
    """`text` cut to `limit` characters, ending in "..." when cut: values quoted in messages."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sort_key(problem: Problem) -> tuple[str, int, int, str]:
    return (problem.file, problem.line, problem.column, problem.message)
