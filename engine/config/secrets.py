"""Which values of a config are secrets, by where they stand (the loader adds those of
environment variables named like secrets, wherever they stand).

A secret position: a target's `token`; a target header that is named like a credential (its
whole value) or takes a value from the environment (that value); the user information of any
target URL; the path and query of a target URL marked `secret_url` (a signed URL, a webhook
whose key is in its path), and every value taken from the environment into such a URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from engine.config.loader import _get
from engine.config.problems import DocPath

SECRET_HEADER = re.compile(r"(?i)authorization|token|secret|password|api[_-]?key|cookie|signature")


def positional_secrets(data: Any, env_values: Mapping[DocPath, tuple[str, ...]]) -> frozenset[str]:
    found: set[str] = set()
    targets = data.get("targets") if isinstance(data, dict) else None
    if not isinstance(targets, dict):
        return frozenset()
    for name, target in targets.items():
        if not isinstance(target, dict):
            continue
        base: DocPath = ("targets", name)
        if isinstance(target.get("token"), str) and target["token"]:
            found.add(target["token"])
        headers = target.get("headers")
        if isinstance(headers, dict):
            for header, value in headers.items():
                found.update(env_values.get(base + ("headers", header), ()))
                if isinstance(value, str) and SECRET_HEADER.search(str(header)):
                    found.add(value.removeprefix("Bearer ").removeprefix("bearer "))
        urls = [("url",), *((("urls", i),) for i in range(len(target.get("urls") or [])))]
        for sub in urls:
            url = _get(target, sub)
            if not isinstance(url, str):
                continue
            found.update(_url_secrets(url, secret=target.get("secret_url") is True))
            if target.get("secret_url") is True:
                found.update(env_values.get(base + sub, ()))
    return frozenset(found)


def _url_secrets(url: str, *, secret: bool) -> set[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return set()
    found = set()
    if parts.password:
        found.update({parts.password, unquote(parts.password)})
    if parts.username and parts.password is None:  # `https://TOKEN@host`: the user is the credential
        found.update({parts.username, unquote(parts.username)})
    if secret:
        if parts.path.strip("/"):
            found.add(parts.path.rstrip("/"))
        if parts.query:
            found.add(parts.query)
            found.update(value for _, value in parse_qsl(parts.query) if value)
    return found

