"""A small reader of protobuf text format, enough for cel-spec's `SimpleTestFile` data.

`parse(text)` gives a `Message`: field name -> list of values (every field may repeat), each a
`Message`, a `bytes` string (text format strings are bytes; the reader decides on UTF-8), an
int, a float, or an enum/identifier as `Ident`. `[type.googleapis.com/...]` names of expanded
`Any` messages are kept as field names with their brackets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<bracket>\[[A-Za-z0-9_./]+\])
  | (?P<num>-?(?:inf(?:inity)?|nan|0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)[fFuU]?)\b
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[{}<>:;,\[\]])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": b"\n", "t": b"\t", "r": b"\r", "a": b"\a", "b": b"\b", "f": b"\f", "v": b"\v",
            "\\": b"\\", "'": b"'", '"': b'"', "?": b"?"}


@dataclass(frozen=True)
class Ident:
    name: str


@dataclass
class Message:
    fields: dict[str, list[Any]] = field(default_factory=dict)

    def all(self, name: str) -> list[Any]:
        return self.fields.get(name, [])

    def get(self, name: str, default: Any = None) -> Any:
        values = self.fields.get(name)
        return values[-1] if values else default

    def has(self, name: str) -> bool:
        return name in self.fields

    def text(self, name: str, default: str = "") -> str:
        value = self.get(name)
        return value.decode("utf-8") if isinstance(value, bytes) else default


def _unescape(body: str) -> bytes:
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8")
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out += _ESCAPES[nxt]
            i += 2
        elif nxt in "xX":
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])
            assert m, body
            out.append(int(m.group(), 16))
            i += 2 + len(m.group())
        elif nxt in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            assert m, body
            out.append(int(m.group(), 8))
            i += 1 + len(m.group())
        elif nxt == "u":
            out += chr(int(body[i + 2: i + 6], 16)).encode("utf-8", "surrogatepass")
            i += 6
        elif nxt == "U":
            out += chr(int(body[i + 2: i + 10], 16)).encode("utf-8", "surrogatepass")
            i += 10
        else:
            raise ValueError(f"unknown escape \\{nxt}")
    return bytes(out)


def _tokens(text: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"textproto: cannot read {text[pos:pos + 30]!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup or "", m.group()))
    return out


class _Reader:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def message(self, close: str | None) -> Message:
        msg = Message()
        while True:
            tok = self.peek()
            if tok is None:
                if close is not None:
                    raise ValueError("textproto: unclosed message")
                return msg
            if close is not None and tok[1] == close:
                self.take()
                return msg
            kind, name = self.take()
            if kind not in ("ident", "bracket"):
                raise ValueError(f"textproto: expected a field name, got {name!r}")
            if self.peek() is not None and self.peek()[1] == ":":  # type: ignore[index]
                self.take()
            for value in self.values():
                msg.fields.setdefault(name, []).append(value)
            if self.peek() is not None and self.peek()[1] in (",", ";"):  # type: ignore[index]
                self.take()

    def values(self) -> list[Any]:
        tok = self.peek()
        assert tok is not None
        if tok[1] == "[":
            self.take()
            items = []
            while self.peek()[1] != "]":  # type: ignore[index]
                items.extend(self.values())
                if self.peek()[1] == ",":  # type: ignore[index]
                    self.take()
            self.take()
            return items
        return [self.scalar_or_message()]

    def scalar_or_message(self) -> Any:
        kind, text = self.take()
        if text in ("{", "<"):
            return self.message("}" if text == "{" else ">")
        if kind == "str":
            data = _unescape(text[1:-1])
            while self.peek() is not None and self.peek()[0] == "str":  # adjacent strings concatenate
                data += _unescape(self.take()[1][1:-1])
            return data
        if kind == "num":
            lowered = text.lower()
            if lowered.lstrip("-") in ("inf", "infinity", "nan"):
                return float(lowered)
            body = text.rstrip("fFuU") if not lowered.startswith(("0x", "-0x")) else text
            if lowered.startswith(("0x", "-0x")):
                return int(lowered, 16)
            if re.fullmatch(r"-?\d+", body):
                return int(body)
            return float(body)
        if kind == "ident":
            if text in ("true", "True"):
                return True
            if text in ("false", "False"):
                return False
            if text.lower() in ("inf", "infinity", "nan"):
                return float(text.lower())
            return Ident(text)
        raise ValueError(f"textproto: unexpected {text!r}")


def parse(text: str) -> Message:
    return _Reader(text).message(None)
