"""A copy of a shipped subject with the repository's layout: configs/<subject>.yaml, subjects/<subject>/
and, where it exists, compose/<subject>/ (the TiKV lab's Prometheus reads its config from there)."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def copy_subject(tmp_path: Path, subject: str) -> tuple[Path, Path]:
    """(the copied config, the copied subject's tests directory)."""
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / ".opctl-root", tmp_path)  # configs/ names ../subjects/: one project root
    config = tmp_path / "configs" / f"{subject}.yaml"
    shutil.copy(ROOT / "configs" / f"{subject}.yaml", config)
    shutil.copytree(ROOT / "subjects" / subject, tmp_path / "subjects" / subject)
    if (ROOT / "compose" / subject).is_dir():
        shutil.copytree(ROOT / "compose" / subject, tmp_path / "compose" / subject)
    return config, tmp_path / "subjects" / subject / "tests"
