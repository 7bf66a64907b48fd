"""Which files a config may name (`context_file`, `prompts.*_file`, `diagnosis.replay_file`,
`lab`): files inside its root, so a config cannot pull `/etc/passwd` or `~/.ssh/id_rsa` into a
prompt or a lab.

The root is the nearest folder at or above the config's own that holds a `.opctl-root` file (a
project marks itself: this repository's `configs/` name `../subjects/...`), else the config's own
folder. A path outside it is refused at validate, unless it is absolute and the user said so with
`opctl --allow-outside ...`: reading outside is a decision made by whoever runs opctl, never by the
config alone.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path

ROOT_MARKER = ".opctl-root"

# Set by the CLI's `--allow-outside` for the whole command; default: refuse.
allow_outside: ContextVar[bool] = ContextVar("allow_outside", default=False)


def config_root(config_dir: Path) -> Path:
    """The folder a config's file references must stay in."""
    here = config_dir.resolve()
    for folder in (here, *here.parents):
        if (folder / ROOT_MARKER).is_file():
            return folder
    return here


def outside_reason(config_dir: Path, rel: str) -> str | None:
    """Why the config under `config_dir` may not name `rel`, or None when it may."""
    resolved = (config_dir / rel).resolve()
    root = config_root(config_dir)
    if resolved.is_relative_to(root):
        return None
    if Path(rel).is_absolute() and allow_outside.get():
        return None
    if Path(rel).is_absolute():
        return (f"'{rel}' is outside the config's root {root}; a config reads files outside it only when "
                f"the command is run with `opctl --allow-outside ...`")
    return (f"'{rel}' resolves to {resolved}, outside the config's root {root}; name a file inside it "
            f"(a `{ROOT_MARKER}` file marks a project's root), or an absolute path with `opctl --allow-outside ...`")
