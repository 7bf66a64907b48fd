"""Checks of `notify`: names are unique, and each receiver's URL is an http(s) URL with a host
(a mistyped URL is found here, not by an undelivered page during an incident). Both or neither
of `alertmanager`/`webhook` and unknown event names are the schema's to refuse."""

from __future__ import annotations

from urllib.parse import urlsplit

from engine.config.checks import PartialConfig
from engine.config.loader import LoadedDocument
from engine.config.problems import DocPath, Problem


def notify_problems(doc: LoadedDocument, partial: PartialConfig) -> list[Problem]:
    problems: list[Problem] = []

    def report(path: DocPath, message: str) -> None:
        mark = doc.mark_for(path)
        problems.append(Problem(doc.file, mark.line, mark.column, path, message))

    seen: dict[str, int] = {}
    for index, receiver in partial.notify:
        kind = "alertmanager" if receiver.alertmanager is not None else "webhook"
        if receiver.name in seen:
            report(("notify", index, "name"), f"another notify entry (#{seen[receiver.name]}) is named '{receiver.name}'")
        seen.setdefault(receiver.name, index)
        url = receiver.url
        parts = urlsplit(url) if "://" in url else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raw = doc.interpolated.get(("notify", index, kind, "url"))  # ${VAR}: its value may hold a token
            shown = f"from {raw}" if raw is not None else f"'{url}'"
            report(("notify", index, kind, "url"), f"notify '{receiver.name}': the {kind} URL {shown} is not an "
                                                   "http(s)://host[:port][/path] URL")
    return problems
