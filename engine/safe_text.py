"""Text that came from outside (observed values, model output, store records) made safe to print.

    escape_controls("node\\x1b]52;c;aGk=\\x07")    # 'node\\\\x1b]52;c;aGk=\\\\x07': inert, visible
    plain(ticket.entity_key, style="bold")        # a rich Text: never parsed as markup

Every string opctl shows on a terminal that it did not write itself goes through this module:
an observed node id `[/]` must not be read as rich markup (a crash), and an OSC 52 clipboard
write, an `ESC[2J` or an OSC 8 hyperlink inside an observed value must reach the terminal as
visible characters, never as a control sequence. Escaped: C0 controls and DEL, C1 controls
(0x80-0x9f, which include the 8-bit CSI and OSC), the Unicode line and paragraph separators and
the bidirectional overrides (text that reads differently from what it is). `\\n` is kept only
where a caller asks for several lines.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

_BIDI = (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)
_ESCAPES: dict[int, str] = {
    code: (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    for code in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, *_BIDI)
}
_ESCAPES[ord("\t")] = "\\t"
_ESCAPES[ord("\n")] = "\\n"
_ESCAPES[ord("\r")] = "\\r"
_MULTILINE = {**_ESCAPES, ord("\n"): "\n"}


def escape_controls(text: str, *, multiline: bool = False) -> str:
    """`text` with every control character written out as a visible escape (`\\x1b`, `\\u202e`)."""
    return text.translate(_MULTILINE if multiline else _ESCAPES)


def safe(value: Any, *, multiline: bool = False) -> str:
    """Any value as printable text: `str()` of it, control characters escaped."""
    return escape_controls(value if isinstance(value, str) else str(value), multiline=multiline)


def plain(value: Any, style: str = "", *, multiline: bool = False) -> Text:
    """A rich Text of `value`, controls escaped; a Text is never interpreted as markup."""
    return Text(safe(value, multiline=multiline), style=style)
