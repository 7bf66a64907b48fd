"""Fast path for the CEL subset the engine evaluates per entity: parse → Python source → function.

`engine/expr.py` evaluates with it; `engine/config/types.py` type-checks its AST. `parse(source)`
turns CEL text into a small AST (raising `Unsupported` for syntax outside it: message
construction, two-variable macros), `free_names(ast)` lists the top-level variables, and
`build(ast, source)` generates one Python function `fn(env)` (raising `Unsupported` for nodes it
leaves to the library: uint and bytes literals, functions other than the common ones). The
generated code follows the CEL spec as the library (cel-expr-python) implements it:

* a runtime error is `CelError` (expr.py turns it into `ExpressionEvalError`);
* whenever the generated code meets a value or type combination it does not model exactly
  (a non-JSON Python value, an int beyond int64, a regex subject with control characters…)
  it raises `Fallback`, and the caller re-evaluates the whole expression with the library.
  `Fallback` is never absorbed by `&&`/`||`, so a fast result is always the library's result.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1


class CelError(Exception):
    """Evaluation failed the way the library would fail (message is for the user)."""


class Fallback(Exception):
    """The fast path cannot decide this evaluation exactly; re-run it on the library."""


class Unsupported(Exception):
    """The expression uses syntax outside the fast-path subset."""


# --------------------------------------------------------------------------- AST

@dataclass(frozen=True)
class Node:
    start: int
    end: int


@dataclass(frozen=True)
class Lit(Node):
    value: Any


@dataclass(frozen=True)
class Ident(Node):
    name: str


@dataclass(frozen=True)
class Select(Node):
    operand: Node
    field: str
    test_only: bool = False  # has(operand.field)


@dataclass(frozen=True)
class Index(Node):
    operand: Node
    index: Node


@dataclass(frozen=True)
class Call(Node):
    target: Node | None
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class ListLit(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class MapLit(Node):
    entries: tuple[tuple[Node, Node], ...]


@dataclass(frozen=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Cond(Node):
    cond: Node
    then: Node
    other: Node


@dataclass(frozen=True)
class Comprehension(Node):
    macro: str  # "exists" | "all" | "exists_one" | "map" | "filter" (only the first two run fast)
    range: Node
    var: str
    pred: Node
    transform: Node | None = None  # map(x, pred, transform)


# --------------------------------------------------------------------------- lexer

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<float>(?:\d+\.\d+(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+))
  | (?P<hex>0[xX][0-9a-fA-F]+[uU]?)
  | (?P<int>\d+[uU]?)
  | (?P<str>[rRbB]{0,2}(?:\"\"\"|'''|"|'))
  | (?P<quoted>`[^`\n]+`)
  | (?P<ident>[_a-zA-Z][_a-zA-Z0-9]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!+\-*/%?:.,()\[\]{}])
    """,
    re.VERBOSE,
)
_SIMPLE_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "`": "`", "?": "?", "n": "\n", "t": "\t", "r": "\r",
                   "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
_RESERVED = {"in", "as", "break", "const", "continue", "else", "for", "function", "if",
             "import", "let", "loop", "package", "namespace", "return", "var", "void", "while"}


# Function namespaces of the loaded extensions: `math.greatest(...)` calls a function, it does not
# read a variable `math`.
NAMESPACES = frozenset({"math", "strings", "base64", "cel"})


TWO_VARIABLES = "two-variable comprehension"


class UInt(int):
    """An unsigned int literal (`5u`): parsed so the checker sees it; the fast path leaves it to the library."""


@dataclass(frozen=True)
class Tok:
    kind: str  # "int" "float" "str" "bytes" "ident" "quoted" "op" "eof"
    value: Any
    start: int
    end: int


def _lex_string(src: str, pos: int, prefix: str, quote: str) -> tuple[str | bytes, int]:
    raw = "r" in prefix.lower()
    as_bytes = "b" in prefix.lower()
    i = pos
    out: list[str] = []
    data = bytearray()

    def put(text: str) -> None:
        (data.extend(text.encode("utf-8")) if as_bytes else out.append(text))

    while i < len(src):
        ch = src[i]
        if src.startswith(quote, i):
            return (bytes(data) if as_bytes else "".join(out)), i + len(quote)
        if ch == "\\" and not raw:
            esc = src[i + 1: i + 2]
            if esc in _SIMPLE_ESCAPES:
                put(_SIMPLE_ESCAPES[esc])
                i += 2
                continue
            width = {"x": 2, "X": 2, "u": 4, "U": 8}.get(esc)
            if width is not None and (esc in "xX" or not as_bytes):
                digits = src[i + 2: i + 2 + width]
                if len(digits) != width or any(c not in "0123456789abcdefABCDEF" for c in digits):
                    raise Unsupported("escape sequence")
                code = int(digits, 16)
                if as_bytes:
                    data.append(code)
                else:
                    if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
                        raise Unsupported("escape sequence")
                    out.append(chr(code))
                i += 2 + width
                continue
            digits = src[i + 1: i + 4]
            if len(digits) == 3 and all(c in "01234567" for c in digits) and digits[0] in "0123":
                (data.append(int(digits, 8)) if as_bytes else out.append(chr(int(digits, 8))))
                i += 4
                continue
            raise Unsupported("escape sequence")
        if ch in "\n\r" and len(quote) == 1:
            raise Unsupported("newline in string")
        put(ch)
        i += 1
    raise Unsupported("unterminated string")


def tokenize(src: str) -> list[Tok]:
    toks: list[Tok] = []
    pos = 0
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if m is None:
            raise Unsupported(f"character {src[pos]!r}")
        kind = m.lastgroup
        text = m.group()
        if kind == "ws":
            pos = m.end()
            continue
        if kind == "str":
            quote = text.lstrip("rRbB")
            value, end = _lex_string(src, m.end(), text[: len(text) - len(quote)], quote)
            toks.append(Tok("bytes" if isinstance(value, bytes) else "str", value, pos, end))
            pos = end
            continue
        if kind in ("int", "hex"):
            unsigned = text[-1] in "uU"
            number = int(text.rstrip("uU"), 16 if kind == "hex" else 10)
            toks.append(Tok("int", UInt(number) if unsigned else number, pos, m.end()))
        elif kind == "quoted":
            toks.append(Tok("quoted", text[1:-1], pos, m.end()))
        elif kind == "float":
            toks.append(Tok("float", float(text), pos, m.end()))
        else:
            toks.append(Tok(kind or "op", text, pos, m.end()))
        pos = m.end()
    toks.append(Tok("eof", None, len(src), len(src)))
    return toks


# --------------------------------------------------------------------------- parser

_RELOPS = {"<", "<=", ">", ">=", "==", "!=", "in"}


class _Parser:
    def __init__(self, src: str) -> None:
        self.toks = tokenize(src)
        self.i = 0

    def peek(self) -> Tok:
        return self.toks[self.i]

    def next(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def at(self, value: str) -> bool:
        tok = self.toks[self.i]
        return tok.kind in ("op", "ident") and tok.value == value

    def expect(self, value: str) -> Tok:
        if not self.at(value):
            raise Unsupported(f"expected {value!r}")
        return self.next()

    def parse(self) -> Node:
        node = self.expr()
        if self.peek().kind != "eof":
            raise Unsupported("trailing input")
        return node

    def expr(self) -> Node:
        cond = self.or_()
        if not self.at("?"):
            return cond
        self.next()
        then = self.or_()
        self.expect(":")
        other = self.expr()
        return Cond(cond.start, other.end, cond, then, other)

    def or_(self) -> Node:
        node = self.and_()
        while self.at("||"):
            self.next()
            right = self.and_()
            node = Binary(node.start, right.end, "||", node, right)
        return node

    def and_(self) -> Node:
        node = self.relation()
        while self.at("&&"):
            self.next()
            right = self.relation()
            node = Binary(node.start, right.end, "&&", node, right)
        return node

    def relation(self) -> Node:
        node = self.addition()
        while self.peek().value in _RELOPS and self.peek().kind in ("op", "ident"):
            op = self.next().value
            right = self.addition()
            node = Binary(node.start, right.end, op, node, right)
        return node

    def addition(self) -> Node:
        node = self.multiplication()
        while self.at("+") or self.at("-"):
            op = self.next().value
            right = self.multiplication()
            node = Binary(node.start, right.end, op, node, right)
        return node

    def multiplication(self) -> Node:
        node = self.unary()
        while self.at("*") or self.at("/") or self.at("%"):
            op = self.next().value
            right = self.unary()
            node = Binary(node.start, right.end, op, node, right)
        return node

    def unary(self) -> Node:
        if self.at("!") or self.at("-"):
            tok = self.next()
            if tok.value == "-" and self.peek().kind in ("int", "float") and not isinstance(self.peek().value, UInt):
                # "-9223372036854775808" is one literal in CEL; fold like the library does
                num = self.peek()
                if self.toks[self.i + 1].value not in (".", "["):
                    self.next()
                    value = -num.value
                    if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
                        raise Unsupported("int literal out of range")
                    return Lit(tok.start, num.end, value)
            operand = self.unary()
            return Unary(tok.start, operand.end, tok.value, operand)
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        while True:
            if self.at("."):
                self.next()
                tok = self.next()
                if tok.kind == "quoted":  # a.`dashed-name`
                    node = Select(node.start, tok.end, node, tok.value)
                    continue
                if tok.kind != "ident" or tok.value in _RESERVED or tok.value in ("true", "false", "null"):
                    raise Unsupported("field name")
                if self.at("("):
                    args = self.args(")")
                    node = self.method(node, tok.value, args, self.toks[self.i - 1].end)
                else:
                    node = Select(node.start, tok.end, node, tok.value)
            elif self.at("["):
                self.next()
                index = self.expr()
                end = self.expect("]").end
                node = Index(node.start, end, node, index)
            else:
                return node

    def args(self, close: str) -> list[Node]:
        self.next()  # the opening bracket
        items: list[Node] = []
        while not self.at(close):
            items.append(self.expr())
            if not self.at(","):
                break
            self.next()
        self.expect(close)
        return items

    def method(self, target: Node, name: str, args: list[Node], end: int) -> Node:
        if name == "existsOne":
            name = "exists_one"
        if name in ("transformList", "transformMap", "transformMapEntry") or (
                name in ("exists", "all", "exists_one") and len(args) == 3
                and isinstance(args[0], Ident) and isinstance(args[1], Ident)):
            raise Unsupported(TWO_VARIABLES)
        if name in ("exists", "all", "exists_one", "map", "filter"):
            var = args[0] if args else None
            if not isinstance(var, Ident) or len(args) not in (2, 3) or (len(args) == 3 and name != "map"):
                raise Unsupported(f"macro {name}")
            transform = args[2] if len(args) == 3 else None
            return Comprehension(target.start, end, name, target, var.name, args[1], transform)
        if isinstance(target, Ident) and target.name in NAMESPACES:
            return Call(target.start, end, None, f"{target.name}.{name}", tuple(args))  # math.greatest(...)
        return Call(target.start, end, target, name, tuple(args))

    def primary(self) -> Node:
        tok = self.peek()
        if tok.kind in ("int", "float", "str", "bytes"):
            self.next()
            if tok.kind == "int" and tok.value > (2**64 - 1 if isinstance(tok.value, UInt) else INT_MAX):
                raise Unsupported("int literal out of range")
            return Lit(tok.start, tok.end, tok.value)
        if tok.kind == "ident":
            self.next()
            if tok.value in ("true", "false", "null"):
                return Lit(tok.start, tok.end, {"true": True, "false": False, "null": None}[tok.value])
            if tok.value in _RESERVED:
                raise Unsupported("reserved word")
            if self.at("("):
                args = self.args(")")
                end = self.toks[self.i - 1].end
                if tok.value == "has":
                    if len(args) != 1 or not isinstance(args[0], Select):
                        raise Unsupported("has() argument")
                    sel = args[0]
                    return Select(tok.start, end, sel.operand, sel.field, test_only=True)
                return Call(tok.start, end, None, tok.value, tuple(args))
            if self.at("{"):
                raise Unsupported("message construction")
            return Ident(tok.start, tok.end, tok.value)
        if self.at("("):
            self.next()
            node = self.expr()
            self.expect(")")
            return node
        if self.at("["):
            start = tok.start
            items = self.args("]")
            return ListLit(start, self.toks[self.i - 1].end, tuple(items))
        if self.at("{"):
            start = tok.start
            self.next()
            entries: list[tuple[Node, Node]] = []
            while not self.at("}"):
                key = self.expr()
                self.expect(":")
                entries.append((key, self.expr()))
                if not self.at(","):
                    break
                self.next()
            end = self.expect("}").end
            return MapLit(start, end, tuple(entries))
        raise Unsupported(f"token {tok.value!r}")


def parse(source: str) -> Node:
    """Parse `source` (already accepted by the library) into the fast-path AST, or raise Unsupported."""
    return _Parser(source).parse()


def free_names(node: Node, bound: frozenset[str] = frozenset()) -> frozenset[str]:
    """Top-level variables `node` references; comprehension variables are not free."""
    if isinstance(node, Ident):
        return frozenset() if node.name in bound else frozenset({node.name})
    if isinstance(node, Comprehension):
        inner = bound | {node.var}
        out = free_names(node.range, bound) | free_names(node.pred, inner)
        return out | (free_names(node.transform, inner) if node.transform is not None else frozenset())
    out: frozenset[str] = frozenset()
    for child in _children(node):
        out |= free_names(child, bound)
    return out


def _children(node: Node) -> list[Node]:
    if isinstance(node, (Select, Unary)):
        return [node.operand]
    if isinstance(node, Index):
        return [node.operand, node.index]
    if isinstance(node, Call):
        return ([node.target] if node.target is not None else []) + list(node.args)
    if isinstance(node, ListLit):
        return list(node.items)
    if isinstance(node, MapLit):
        return [part for entry in node.entries for part in entry]
    if isinstance(node, Binary):
        return [node.left, node.right]
    if isinstance(node, Cond):
        return [node.cond, node.then, node.other]
    return []


# --------------------------------------------------------------------------- runtime helpers
# Called by generated code on the less common branches. Every helper first makes sure each
# operand is a JSON-like value it models (`_known`), else defers to the library (`Fallback`).

_NONE_TYPE = type(None)
_KIND = {dict: "map", list: "list", str: "string", int: "int", float: "double", bool: "bool",
         _NONE_TYPE: "null"}
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _known(*values: Any) -> None:
    for v in values:
        cls = v.__class__
        if cls not in _KIND or (cls is int and not INT_MIN <= v <= INT_MAX):
            raise Fallback


def _no_overload(op: str, *values: Any) -> CelError:
    _known(*values)
    kinds = ", ".join(_KIND[v.__class__] for v in values)
    return CelError(f"no such overload: {op} is not defined for ({kinds}); CEL does not convert between types")


def _out(v: Any) -> Any:
    """Check a result the library would also return unchanged (it converts ints beyond int64)."""
    cls = v.__class__
    if cls is bool or cls is str or cls is float or v is None:
        return v
    if cls is int:
        if INT_MIN <= v <= INT_MAX:
            return v
        raise Fallback
    if cls is list:
        for item in v:
            _out(item)
        return v
    if cls is dict:
        for key, item in v.items():
            if key.__class__ is not str:
                raise Fallback
            _out(item)
        return v
    raise Fallback


def _bad_select(v: Any, field: str, text: str) -> CelError:
    _known(v)
    return CelError(f"cannot read field {field!r} of {text}: it is a {_KIND[v.__class__]}, not a map")


def _index(v: Any, k: Any, text: str) -> Any:
    cls = v.__class__
    if cls is list:
        if k.__class__ is int:
            _known(k)
            if 0 <= k < len(v):
                return v[k]
            raise CelError(f"index {k} out of range for {text} (size {len(v)})")
        _known(k)
        raise CelError(f"cannot index list {text} with a {_KIND[k.__class__]}")
    if cls is dict:
        if k.__class__ is str:
            try:
                return v[k]
            except KeyError:
                raise CelError(f"no key {k!r} in {text}") from None
        if k.__class__ is int or k.__class__ is bool:
            raise Fallback  # int/bool map keys: leave to the library
        _known(k)
        raise CelError(f"a {_KIND[k.__class__]} cannot be a map key (indexing {text})")
    _known(v, k)
    raise CelError(f"cannot index {text}: it is a {_KIND[cls]}")


def _neg(v: Any) -> Any:
    cls = v.__class__
    if cls is int:
        _known(v)
        if v == INT_MIN:
            raise CelError(f"integer overflow in -({v})")
        return -v
    if cls is float:
        return -v
    raise _no_overload("-", v)


def _check_int(op: str, a: int, b: int, r: int) -> int:
    _known(a, b)
    if INT_MIN <= r <= INT_MAX:
        return r
    raise CelError(f"integer overflow in {a} {op} {b}")


def _arith(op: str, a: Any, b: Any) -> Any:
    ca = a.__class__
    if ca is b.__class__:
        if ca is int:
            return _check_int(op, a, b, a + b if op == "+" else a - b if op == "-" else a * b)
        if ca is float:
            return a + b if op == "+" else a - b if op == "-" else a * b
        if op == "+" and (ca is str or ca is list):
            return a + b
    raise _no_overload(op, a, b)


def _div(a: Any, b: Any) -> Any:
    ca = a.__class__
    if ca is b.__class__:
        if ca is int:
            _known(a, b)
            if b == 0:
                raise CelError("division by zero")
            if a == INT_MIN and b == -1:
                raise CelError(f"integer overflow in {a} / {b}")
            q = abs(a) // abs(b)
            return -q if (a < 0) != (b < 0) else q
        if ca is float:
            if b:
                return a / b
            if a != a or a == 0:
                return math.nan
            return math.copysign(math.inf, a) * math.copysign(1.0, b)
    raise _no_overload("/", a, b)


def _mod(a: Any, b: Any) -> Any:
    if a.__class__ is int and b.__class__ is int:
        _known(a, b)
        if b == 0:
            raise CelError("modulo by zero")
        if a == INT_MIN and b == -1:
            raise CelError(f"integer overflow in {a} % {b}")  # library quirk (no wrap to 0)
        r = abs(a) % abs(b)
        return -r if a < 0 else r
    raise _no_overload("%", a, b)


def _ord(op: str, a: Any, b: Any) -> tuple[Any, Any]:
    """Operands as directly comparable Python values, the way the library orders them."""
    ca, cb = a.__class__, b.__class__
    if ca is cb and (ca is str or ca is bool):
        return a, b
    if ca is cb and ca is int:
        _known(a, b)
        return a, b
    if (ca is float or ca is int) and (cb is float or cb is int):
        _known(a, b)
        return float(a), float(b)  # int vs double compares as doubles (lossy), like the library; NaN orders false
    raise _no_overload(op, a, b)


def _eq(a: Any, b: Any) -> bool:
    ca, cb = a.__class__, b.__class__
    if ca is cb:
        if ca is str or ca is bool or ca is float or ca is _NONE_TYPE:
            return a == b
        if ca is int:
            _known(a, b)
            return a == b
        if ca is list:
            return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b))
        if ca is dict:
            for key in a:
                if key.__class__ is not str:
                    raise Fallback
            for key in b:
                if key.__class__ is not str:
                    raise Fallback
            return a.keys() == b.keys() and all(_eq(a[k], b[k]) for k in a)
        raise Fallback
    if (ca is int and cb is float) or (ca is float and cb is int):
        _known(a, b)
        return float(a) == float(b)
    _known(a, b)
    return False


def _in(a: Any, b: Any) -> bool:
    cb = b.__class__
    if cb is list:
        if a.__class__ is str:
            for item in b:
                if item.__class__ is not str:
                    _known(item)
            return a in b
        return any(_eq(a, item) for item in b)
    if cb is dict:
        if a.__class__ is str:
            return a in b
        if a.__class__ in (int, bool, float) and all(k.__class__ is str for k in b):
            _known(a)
            return False  # a number or bool is never one of a JSON map's (string) keys
        raise Fallback  # numeric keys compare across int/uint/double: the library decides
    raise _no_overload("in", a, b)


def _size(v: Any) -> int:
    cls = v.__class__
    if cls is str:
        return len(v)  # code points, as the spec says
    if cls is list or cls is dict:
        return len(v)
    _known(v)
    raise CelError(f"size() is not defined for a {_KIND[cls]}")


def _str_method(name: str, a: Any, b: Any) -> CelError:
    _known(a, b)
    return CelError(f"{name}() needs a string receiver and argument, got ({_KIND[a.__class__]}, {_KIND[b.__class__]})")


def _matches_slow(pattern: re.Pattern[str], a: Any) -> bool:
    if a.__class__ is str:
        raise Fallback  # non-ASCII or control characters: regex dialects may differ
    _known(a)
    raise CelError(f"matches() needs a string, got a {_KIND[a.__class__]}")


def _to_int(v: Any) -> int:
    cls = v.__class__
    if cls is bool:
        raise Fallback  # the library converts bools; the spec does not say
    if cls is int:
        _known(v)
        return v
    if cls is float:
        if v == v and -9223372036854775808.0 < v < 9223372036854775808.0:
            return int(v)
        raise CelError(f"int({v!r}) overflows: the value is outside the int range")
    if cls is str:
        if _INT_TEXT.fullmatch(v):
            n = int(v)
            if INT_MIN <= n <= INT_MAX:
                return n
            raise CelError(f"int({v!r}) overflows: the value is outside the int range")
        raise Fallback  # the library's integer parsing (it skips whitespace) decides
    _known(v)
    raise CelError(f"int() is not defined for a {_KIND[cls]}")


def _to_double(v: Any) -> float:
    cls = v.__class__
    if cls is float:
        return v
    if cls is int:
        _known(v)
        return float(v)
    if cls is str:
        if _FLOAT_TEXT.fullmatch(v):
            return float(v)
        raise Fallback  # "inf", "NaN", errors: let the library decide
    _known(v)
    raise CelError(f"double() is not defined for a {_KIND[cls]}")


def _to_string(v: Any) -> str:
    cls = v.__class__
    if cls is str:
        return v
    if cls is int:
        _known(v)
        return str(v)
    if cls is bool:
        return "true" if v else "false"
    if cls is float:
        raise Fallback  # the library's shortest form with exponents ("1e+06"): not worth copying
    _known(v)
    raise CelError(f"string() is not defined for a {_KIND[cls]}")


def _iterable(v: Any, macro: str, text: str) -> None:
    if v.__class__ is not list and v.__class__ is not dict:
        _known(v)
        raise CelError(f"{macro}() needs a list or map, but {text} is a {_KIND[v.__class__]}")


def _logic_error(op: str, v: Any) -> CelError:
    """The error of a logic operand that is neither true nor false."""
    if isinstance(v, CelError):
        return v
    _known(v)
    return CelError(f"{op} needs bool operands, got a {_KIND[v.__class__]}")


def duplicate_literal_key(node: MapLit) -> Lit | None:
    """The first literal key of a map literal equal (as CEL compares keys: 1 == 1u) to an
    earlier literal key, or None."""
    seen: set[tuple[str, Any]] = set()
    for key, _ in node.entries:
        if not isinstance(key, Lit):
            continue
        v = key.value
        ident = ("bool", v) if isinstance(v, bool) else ("num", v) if isinstance(v, (int, float)) else ("other", v)
        if ident in seen:
            return key
        seen.add(ident)
    return None


def _chain(node: Node, op: str) -> list[Node]:
    """The operands of a chain of one logic operator, left to right (iteratively: chains are long)."""
    out: list[Node] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Binary) and n.op == op:
            stack += [n.right, n.left]
        else:
            out.append(n)
    return out


def _not_bool(what: str, v: Any) -> CelError:
    _known(v)
    return CelError(f"{what} must be a bool, got a {_KIND[v.__class__]}")


# --------------------------------------------------------------------------- code generation

_RUNTIME: dict[str, Any] = {
    "CelError": CelError, "Fallback": Fallback, "_out": _out, "_bad_select": _bad_select,
    "_index": _index, "_neg": _neg, "_check_int": _check_int, "_arith": _arith, "_div": _div,
    "_mod": _mod, "_ord": _ord, "_eq": _eq, "_in": _in, "_size": _size,
    "_str_method": _str_method, "_matches_slow": _matches_slow, "_to_int": _to_int,
    "_to_double": _to_double, "_to_string": _to_string, "_iterable": _iterable,
    "_logic_error": _logic_error, "_not_bool": _not_bool,
}
_RANGE = f"{INT_MIN} <= {{}} <= {INT_MAX}"
_CMP = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}
_STR_METHODS = {"startsWith": "{a}.startswith({b})", "endsWith": "{a}.endswith({b})",
                "contains": "{b} in {a}"}
_CONVERSIONS = {"int": ("_to_int", "int"), "double": ("_to_double", "float"),
                "string": ("_to_string", "str")}
_SCALAR_TYPES = {"int", "float", "str", "bool", "null"}
# Regex syntax both Python `re` and Rust `regex` read the same way (on printable ASCII text).
_SAFE_REGEX_ESCAPES = set("dDwWsS.\\-+*?()[]{}|^$/")
_REGEX_TRAPS = ("(?", "[[", "[:", "&&", "--", "~~", "[]", "[^]")


def _safe_regex(pattern: str) -> re.Pattern[str] | None:
    if not (pattern.isascii() and pattern.isprintable()) or any(t in pattern for t in _REGEX_TRAPS):
        return None
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if pattern[i + 1: i + 2] not in _SAFE_REGEX_ESCAPES or not pattern[i + 1: i + 2]:
                return None
            i += 2
            continue
        if ch == "{":
            m = re.compile(r"\{\d+(,\d*)?\}").match(pattern, i)
            if m is None:
                return None
            i = m.end()
            continue
        if ch == "}":
            return None
        i += 1
    try:
        return re.compile(pattern)
    except re.error:
        return None


class _Gen:
    """Emits the statements of one function body; with `loop_var`, the body of a loop over the
    items bound to that variable, whose item-independent parts go to `prelude` (run once)."""

    def __init__(self, source: str, depth: int, loop_var: str | None = None) -> None:
        self.source = source
        self.loop_var = loop_var
        self.prelude: list[str] = []
        self.lines: list[str] = []
        self.depth = depth
        self.count = 0
        self.consts: dict[str, Any] = {}
        self.names: set[str] = set()
        # locals already checked to be maps on every path reaching the current line; a block
        # may be skipped or left early, so what it proves is forgotten at its end
        self.maps: set[str] = set()

    def tmp(self) -> str:
        self.count += 1
        return f"t{self.count}"

    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def const(self, value: Any) -> str:
        name = f"k{len(self.consts)}"
        self.consts[name] = value
        return name

    def text(self, node: Node) -> str:
        return self.source[node.start: node.end]

    def block(self, header: str, body: Callable[[], None]) -> None:
        self.line(header)
        self.depth += 1
        proven = set(self.maps)
        body()
        self.maps = proven
        self.depth -= 1

    def emit(self, node: Node, scope: dict[str, str]) -> tuple[str, str | None]:
        """Emit statements computing `node`; return (python expression, static type or None)."""
        if self.loop_var is not None and not isinstance(node, (Lit, Ident)):
            hoisted = self.hoist(node, scope)
            if hoisted is not None:
                return hoisted
        method = getattr(self, "emit_" + type(node).__name__)
        return method(node, scope)

    def hoist(self, node: Node, scope: dict[str, str]) -> tuple[str, str | None] | None:
        """Compute an item-independent `node` once, before the loop (None: it stays in the loop).

        Evaluation is pure, so its outcome is the same for every item; the prelude gives up the
        whole batch when it fails, so an error still appears only where an item reaches it.
        """
        assert self.loop_var is not None
        if free_names(node) & (scope.keys() | {self.loop_var}):
            return None
        saved = self.lines, self.depth, self.maps, self.loop_var
        self.lines, self.depth, self.maps, self.loop_var = [], 3, set(), None
        try:
            value, st = self.emit(node, {})
            lines = self.lines
        finally:
            self.lines, self.depth, self.maps, self.loop_var = saved
        if st not in _SCALAR_TYPES and _creates_container(node):
            return None  # every item gets its own new list or map, as one by one
        self.prelude += lines
        return value, st

    def emit_Lit(self, node: Lit, scope: dict[str, str]) -> tuple[str, str | None]:
        # bound to a local: Python warns at compile time about subscripting a literal like (0)['a']
        expr, st = self.literal(node.value)
        t = self.tmp()
        self.line(f"{t} = {expr}")
        return t, st

    def literal(self, v: Any) -> tuple[str, str]:
        if isinstance(v, (UInt, bytes)):
            raise Unsupported("uint or bytes literal")  # no plain-Python twin: the library decides
        if v is None or isinstance(v, bool):
            return repr(v), ("null" if v is None else "bool")
        if isinstance(v, int):
            return f"({v})", "int"
        if isinstance(v, float):
            return (f"({v!r})" if math.isfinite(v) else self.const(v)), "float"
        return repr(v), "str"

    def emit_Ident(self, node: Ident, scope: dict[str, str]) -> tuple[str, str | None]:
        if node.name in scope:
            return scope[node.name], None
        self.names.add(node.name)
        return f"v_{node.name}", None

    def emit_Select(self, node: Select, scope: dict[str, str]) -> tuple[str, str | None]:
        a, st = self.emit(node.operand, scope)
        operand = self.text(node.operand)
        t = self.tmp()
        if st != "map" and a not in self.maps:
            self.line(f"if {a}.__class__ is not dict: raise _bad_select({a}, {node.field!r}, {operand!r})")
            self.maps.add(a)
        if node.test_only:
            self.line(f"{t} = {node.field!r} in {a}")
            return t, "bool"
        self.block("try:", lambda: self.line(f"{t} = {a}[{node.field!r}]"))
        msg = f"no key {node.field!r} in {operand}"
        self.block("except KeyError:", lambda: self.line(f"raise CelError({msg!r}) from None"))
        return t, None

    def emit_Index(self, node: Index, scope: dict[str, str]) -> tuple[str, str | None]:
        a, _ = self.emit(node.operand, scope)
        k, _ = self.emit(node.index, scope)
        t = self.tmp()
        self.line(f"{t} = _index({a}, {k}, {self.text(node.operand)!r})")
        return t, None

    def emit_Unary(self, node: Unary, scope: dict[str, str]) -> tuple[str, str | None]:
        a, st = self.emit(node.operand, scope)
        t = self.tmp()
        if node.op == "-":
            self.line(f"{t} = _neg({a})")
            return t, (st if st in ("int", "float", "bool") else None)
        if st != "bool":
            self.line(f"if {a}.__class__ is not bool: raise _not_bool('the operand of !', {a})")
        self.line(f"{t} = not {a}")
        return t, "bool"

    def emit_Binary(self, node: Binary, scope: dict[str, str]) -> tuple[str, str | None]:
        if node.op in ("&&", "||"):
            return self.emit_logic(node, scope)
        a, sa = self.emit(node.left, scope)
        right = node.right
        op = node.op
        if op == "in" and isinstance(right, ListLit) and all(
                isinstance(i, Lit) and isinstance(i.value, str) for i in right.items):
            # `x in ["a", "b"]`: only a string can equal a string, so a set lookup is exact
            members = self.const(frozenset(i.value for i in right.items))  # type: ignore[attr-defined]
            t = self.tmp()
            self.line(f"{t} = {a}.__class__ is str and {a} in {members}")
            return t, "bool"
        b, sb = self.emit(right, scope)
        t = self.tmp()
        if op in ("+", "-", "*"):
            return t, self.emit_arith(op, t, a, sa, b, sb)
        if op == "/":
            # non-negative int / positive int truncates like floor division: the common case
            self.block(f"if {a}.__class__ is int and {b}.__class__ is int and 0 <= {a} <= {INT_MAX} "
                       f"and 0 < {b} <= {INT_MAX}:", lambda: self.line(f"{t} = {a} // {b}"))
            if sa != "int" and sb != "int":
                self.block(f"elif {a}.__class__ is float and {b}.__class__ is float and {b}:",
                           lambda: self.line(f"{t} = {a} / {b}"))
            self.block("else:", lambda: self.line(f"{t} = _div({a}, {b})"))
            return t, (sa if sa == sb and sa in ("int", "float") else None)
        if op == "%":
            self.line(f"{t} = _mod({a}, {b})")
            return t, "int"
        if op in _CMP:
            self.emit_order(op, t, a, sa, b, sb, node)
            return t, "bool"
        if op in ("==", "!="):
            self.emit_equal(op, t, a, sa, b, sb, node)
            return t, "bool"
        self.line(f"{t} = _in({a}, {b})")  # "in"
        return t, "bool"

    def emit_arith(self, op: str, t: str, a: str, sa: str | None, b: str, sb: str | None) -> str | None:
        if "float" in (sa, sb) or sa in ("str", "list") or sb in ("str", "list"):
            float_only = sa in ("float", None) and sb in ("float", None)
            if float_only:
                self.block(f"if {a}.__class__ is float and {b}.__class__ is float:",
                           lambda: self.line(f"{t} = {a} {op} {b}"))
                self.block("else:", lambda: self.line(f"{t} = _arith({op!r}, {a}, {b})"))
                # _arith only combines equal types, so a known float operand makes a float
                return "float" if "float" in (sa, sb) else None
            self.line(f"{t} = _arith({op!r}, {a}, {b})")
            known = {sa, sb} - {None}  # two different known types: _arith always raises
            kind = known.pop() if len(known) == 1 else None
            return kind if kind == "float" or op == "+" else None
        checks = [f"{x}.__class__ is int" for x, s in ((a, sa), (b, sb)) if s != "int"]
        ranges = [_RANGE.format(x) for x in [t] + [x for x, s in ((a, sa), (b, sb)) if s != "int"]]

        def int_branch() -> None:
            self.line(f"{t} = {a} {op} {b}")
            self.line(f"if not ({' and '.join(ranges)}): {t} = _check_int({op!r}, {a}, {b}, {t})")

        if not checks:
            int_branch()
            return "int"
        self.block(f"if {' and '.join(checks)}:", int_branch)
        if sa != "int" and sb != "int":
            self.block(f"elif {a}.__class__ is float and {b}.__class__ is float:",
                       lambda: self.line(f"{t} = {a} {op} {b}"))
        self.block("else:", lambda: self.line(f"{t} = _arith({op!r}, {a}, {b})"))
        return None

    def emit_order(self, op: str, t: str, a: str, sa: str | None, b: str, sb: str | None, node: Binary) -> None:
        if sa == sb and sa in ("int", "str"):
            self.line(f"{t} = {a} {op} {b}")
            return
        # Python compares the operands exactly where _ord would: equal classes among int
        # (within int64) and str, or numbers that are not NaN (ints within ±2^53 convert to
        # double exactly, so the library's int-to-double comparison agrees with Python's).
        tests: dict[str, str] = {}
        numeric = [self.number_test(a, sa, node.left), self.number_test(b, sb, node.right)]
        if None not in numeric:
            tests["float"] = " and ".join(f"({x})" for x in numeric if x != "True") or "True"
        if sa in ("str", None) and sb in ("str", None):
            tests["str"] = " and ".join(f"{x}.__class__ is str" for x, sx in ((a, sa), (b, sb)) if sx != "str")
        if sa in ("int", None) and sb in ("int", None):
            tests["int"] = " and ".join(f"{x}.__class__ is int and {_RANGE.format(x)}"
                                        for x, sx in ((a, sa), (b, sb)) if sx != "int")
        # the test the known operand type makes likeliest goes first
        first = [kind for kind in ("int", "str", "float") if kind in (sa, sb) and kind in tests]
        tests = {kind: tests[kind] for kind in first + [k for k in tests if k not in first]}
        if "True" in tests.values():
            self.line(f"{t} = {a} {op} {b}")
            return
        slow = lambda: self.line(f"x_, y_ = _ord({op!r}, {a}, {b}); {t} = x_ {op} y_")  # noqa: E731
        if not tests:
            slow()
            return
        self.block(f"if {' or '.join(f'({x})' for x in tests.values())}:",
                   lambda: self.line(f"{t} = {a} {op} {b}"))
        self.block("else:", slow)

    @staticmethod
    def number_test(x: str, sx: str | None, node: Node) -> str | None:
        """Python test that `x` is a double that is not NaN or an int within ±2^53 (None: never)."""
        exact = f"-{2**53} <= {x} <= {2**53}"
        if sx == "float":
            return "True" if isinstance(node, Lit) else f"{x} == {x}"  # a literal is never NaN
        if sx == "int":
            return "True" if isinstance(node, Lit) and abs(node.value) <= 2**53 else exact
        if sx is None:
            return f"{x}.__class__ is float and {x} == {x} or {x}.__class__ is int and {exact}"
        return None

    def emit_equal(self, op: str, t: str, a: str, sa: str | None, b: str, sb: str | None, node: Binary) -> None:
        neg = "not " if op == "!=" else ""
        # put a literal on the right
        if isinstance(node.left, Lit) and not isinstance(node.right, Lit):
            a, sa, b, sb = b, sb, a, sa
            lit: Node | None = node.left
        else:
            lit = node.right if isinstance(node.right, Lit) else None
        if sa == sb and sa in ("int", "str", "bool", "null"):
            self.line(f"{t} = {a} {op} {b}")
        elif lit is not None and sb == "str":
            self.line(f"{t} = {a} {op} {b}")
        elif lit is not None and sb in ("bool", "null"):
            self.line(f"{t} = {neg}({a} is {b})")
        elif lit is not None and sb == "int" and abs(lit.value) <= 2**53:  # type: ignore[attr-defined]
            self.line(f"{t} = {neg}({a} == {b} and {a}.__class__ is not bool)")
        else:
            self.line(f"{t} = {neg}_eq({a}, {b})")

    def emit_logic(self, node: Binary, scope: dict[str, str]) -> tuple[str, str | None]:
        """`a && b && c...` (or `||`) as one flat sequence, however long the chain: CEL's logic is
        commutative, so a decisive operand (false for &&, true for ||) wins over an error on
        either side; otherwise the first error, or a non-bool operand, fails the whole."""
        stop, go = ("False", "True") if node.op == "&&" else ("True", "False")
        operands = _chain(node, node.op)
        t, err, value = self.tmp(), self.tmp(), self.tmp()
        self.line(f"{t} = {go}")
        self.line(f"{err} = None")
        for index, sub in enumerate(operands):
            def one(sub: Node = sub) -> None:
                caught = self.tmp()

                def body() -> None:
                    v, _ = self.emit(sub, scope)
                    self.line(f"{value} = {v}")
                self.block("try:", body)
                self.block(f"except CelError as {caught}:", lambda: self.line(f"{value} = {caught}"))
                self.block(f"if {value} is {stop}:", lambda: self.line(f"{t} = {stop}"))
                self.block(f"elif {value} is not {go} and {err} is None:",
                           lambda: self.line(f"{err} = _logic_error({node.op!r}, {value})"))
            if index == 0:
                one()
            else:
                self.block(f"if {t} is {go}:", one)
        self.line(f"if {t} is {go} and {err} is not None: raise {err}")
        return t, "bool"

    def emit_Cond(self, node: Cond, scope: dict[str, str]) -> tuple[str, str | None]:
        c, sc = self.emit(node.cond, scope)
        t = self.tmp()
        if sc != "bool":
            self.line(f"if {c}.__class__ is not bool: raise _not_bool('the condition of ?:', {c})")
        types: list[str | None] = []

        def branch(sub: Node) -> Callable[[], None]:
            def body() -> None:
                value, st = self.emit(sub, scope)
                types.append(st)
                self.line(f"{t} = {value}")
            return body
        self.block(f"if {c}:", branch(node.then))
        self.block("else:", branch(node.other))
        return t, (types[0] if types[0] == types[1] else None)

    def emit_ListLit(self, node: ListLit, scope: dict[str, str]) -> tuple[str, str | None]:
        items = [self.emit(i, scope)[0] for i in node.items]
        t = self.tmp()
        self.line(f"{t} = [{', '.join(items)}]")
        return t, "list"

    def emit_MapLit(self, node: MapLit, scope: dict[str, str]) -> tuple[str, str | None]:
        if duplicate_literal_key(node) is not None:
            t = self.tmp()
            self.line(f"raise CelError({'duplicate key in a map literal: ' + self.text(node)!r})")
            return t, "map"
        parts = []
        for key, value in node.entries:
            if not (isinstance(key, Lit) and isinstance(key.value, str)):
                raise Unsupported("map literal with non-string keys")
            parts.append(f"{key.value!r}: {self.emit(value, scope)[0]}")
        t = self.tmp()
        self.line(f"{t} = {{{', '.join(parts)}}}")
        return t, "map"

    def emit_Call(self, node: Call, scope: dict[str, str]) -> tuple[str, str | None]:
        args = list(node.args)
        if node.target is not None:
            args.insert(0, node.target)
        name = node.name
        t = self.tmp()
        if name == "size" and len(args) == 1:
            a, _ = self.emit(args[0], scope)
            self.line(f"{t} = _size({a})")
            return t, "int"
        if node.target is None and name in _CONVERSIONS and len(args) == 1:
            helper, st = _CONVERSIONS[name]
            a, _ = self.emit(args[0], scope)
            self.line(f"{t} = {helper}({a})")
            return t, st
        if node.target is not None and name in _STR_METHODS and len(args) == 2:
            a, sa = self.emit(args[0], scope)
            b, sb = self.emit(args[1], scope)
            expr = _STR_METHODS[name].format(a=a, b=b)
            checks = [f"{x}.__class__ is str" for x, s in ((a, sa), (b, sb)) if s != "str"] or ["True"]
            self.block(f"if {' and '.join(checks)}:", lambda: self.line(f"{t} = {expr}"))
            self.block("else:", lambda: self.line(f"raise _str_method({name!r}, {a}, {b})"))
            return t, "bool"
        if node.target is not None and name == "matches" and len(args) == 2:
            pattern = args[1]
            if not (isinstance(pattern, Lit) and isinstance(pattern.value, str)):
                raise Unsupported("matches() with a computed pattern")
            compiled = _safe_regex(pattern.value)
            if compiled is None:
                raise Unsupported("regex syntax outside the shared subset")
            k = self.const(compiled)
            a, _ = self.emit(args[0], scope)
            self.block(f"if {a}.__class__ is str and {a}.isascii() and {a}.isprintable():",
                       lambda: self.line(f"{t} = {k}.search({a}) is not None"))
            self.block("else:", lambda: self.line(f"{t} = _matches_slow({k}, {a})"))
            return t, "bool"
        raise Unsupported(f"function {name}")

    def emit_Comprehension(self, node: Comprehension, scope: dict[str, str]) -> tuple[str, str | None]:
        r, st = self.emit(node.range, scope)
        if st not in ("list", "map"):
            self.line(f"_iterable({r}, {node.macro!r}, {self.text(node.range)!r})")
        t = self.tmp()
        var = f"c{self.count}_{node.var}"
        inner = scope | {node.var: var}
        what = f"the {node.macro}() predicate"
        if node.macro in ("exists", "all"):
            return t, self.emit_quantifier(node, r, t, var, inner, what)
        p = self.tmp()

        def check_bool(sp: str | None) -> None:
            if sp != "bool":
                self.line(f"if {p}.__class__ is not bool: raise _not_bool({what!r}, {p})")

        if node.macro == "exists_one":
            self.line(f"{t} = 0")

            def count() -> None:
                value, sp = self.emit(node.pred, inner)
                self.line(f"{p} = {value}")
                check_bool(sp)
                self.line(f"if {p}: {t} += 1")
            self.block(f"for {var} in {r}:", count)
            self.line(f"{t} = {t} == 1")
            return t, "bool"
        self.line(f"{t} = []")  # filter, map

        def collect() -> None:
            keep = node.macro == "filter" or node.transform is not None
            out = node.pred if node.macro == "map" and node.transform is None else node.transform

            def append() -> None:
                if out is None:
                    self.line(f"{t}.append({var})")
                else:
                    value, _ = self.emit(out, inner)
                    self.line(f"{t}.append({value})")
            if keep:
                value, sp = self.emit(node.pred, inner)
                self.line(f"{p} = {value}")
                check_bool(sp)
                self.block(f"if {p}:", append)
            else:
                append()
        self.block(f"for {var} in {r}:", collect)
        return t, "list"

    def emit_quantifier(self, node: Comprehension, r: str, t: str, var: str, inner: dict[str, str], what: str) -> str:
        """exists/all: stop at the first decisive element; an error (or a non-bool) on another
        element counts only when no element decides, as the spec's error-absorbing loop does."""
        found, other = ("True", "False") if node.macro == "exists" else ("False", "True")
        p, err, caught = self.tmp(), self.tmp(), self.tmp()
        self.line(f"{t} = {other}")
        self.line(f"{err} = None")

        def body() -> None:
            def pred() -> None:
                value, _ = self.emit(node.pred, inner)
                self.line(f"{p} = {value}")
            self.block("try:", pred)
            self.block(f"except CelError as {caught}:",
                       lambda: (self.line(f"if {err} is None: {err} = {caught}"), self.line("continue")))
            self.block(f"if {p} is {found}:", lambda: (self.line(f"{t} = {found}"), self.line("break")))
            self.line(f"if {p} is not {other} and {err} is None: {err} = _not_bool({what!r}, {p})")
        self.block(f"for {var} in {r}:", body)
        self.line(f"if {t} is {other} and {err} is not None: raise {err}")
        return "bool"

    def emit_result(self, value: str, st: str | None) -> str:
        """Emit the check of the final value (see `_out`); return the name holding the result."""
        if st in _SCALAR_TYPES:
            return value
        if st is None:  # most results are scalars: check those inline, containers in `_out`
            t = self.tmp()
            self.block(f"if (cls_ := {value}.__class__) is str or cls_ is bool or cls_ is float "
                       f"or cls_ is int and {_RANGE.format(value)} or {value} is None:",
                       lambda: self.line(f"{t} = {value}"))
            self.block("else:", lambda: self.line(f"{t} = _out({value})"))
            return t
        t = self.tmp()
        self.line(f"{t} = _out({value})")
        return t


@dataclass(frozen=True)
class FastProgram:
    fn: Callable[[Any], Any]
    names: frozenset[str]
    code: str


def _creates_container(node: Node) -> bool:
    """Whether evaluating `node` may build a new list or map (list/map literals, `+`)."""
    if isinstance(node, (ListLit, MapLit)) or (isinstance(node, Binary) and node.op == "+"):
        return True
    if isinstance(node, Comprehension):
        return any(_creates_container(n) for n in (node.range, node.pred, node.transform) if n is not None)
    return any(_creates_container(child) for child in _children(node))


def _generate(node: Node, source: str, depth: int, loop_var: str | None = None) -> tuple[_Gen, str]:
    gen = _Gen(source, depth, loop_var)
    result, st = gen.emit(node, {})
    return gen, gen.emit_result(result, st)


def _load(names: list[str], on_missing: str) -> list[str]:
    """Lines binding each top-level variable from `env` (inside the function body)."""
    if not names:
        return []
    return (["        try:"] + [f"            v_{n} = env[{n!r}]" for n in names]
            + ["        except KeyError:", f"            {on_missing}"])


def _finish(gen: _Gen, lines: list[str], source: str) -> Any:
    code = "\n".join(lines)
    namespace = dict(_RUNTIME)
    exec(compile(code, f"<cel {source[:40]!r}>", "exec"), namespace)  # noqa: S102 - generated from our AST
    return namespace["_make"](**gen.consts), code


def build(node: Node, source: str) -> FastProgram:
    """Generate the Python function `fn(env)` for `node`, or raise Unsupported."""
    gen, ret = _generate(node, source, 2)
    names = sorted(gen.names)
    lines = [f"def _make({', '.join(gen.consts)}):", "    def _fast(env):"]
    lines += _load(names, "raise Fallback from None  # undeclared variable: the library decides")
    lines += gen.lines
    lines.append(f"        return {ret}")
    lines.append("    return _fast")
    fn, code = _finish(gen, lines, source)
    return FastProgram(fn, frozenset(names), code)


EachFn = Callable[[Any, Any], "tuple[list[Any], bool] | None"]


def build_each(node: Node, source: str, name: str) -> tuple[EachFn, str]:
    """Generate `each(env, items)`: the loop of `fn` over `items`, each bound to variable `name`.

    It returns None when a variable other than `name` is missing from `env` or a part that does
    not depend on the item fails (the caller then evaluates item by item), else `(results, failed)`: per item the value, the CelError instance, or the class
    `Fallback` (re-evaluate that item with the library); `failed` says whether any item did not
    give a value. Generating the loop saves a call, a try and the variable lookups per item.
    """
    if not name.isidentifier():
        raise Unsupported(f"variable name {name!r}")
    gen, ret = _generate(node, source, 4, name)
    others = sorted(gen.names - {name})
    lines = [f"def _make({', '.join(gen.consts)}):", "    def _each(env, items):"]
    lines += _load(others, "return None  # undeclared variable: the library decides, item by item")
    if gen.prelude:
        lines += ["        try:", *gen.prelude,
                  "        except Exception:  # any failure: evaluate item by item, where it may not be reached",
                  "            return None"]
    lines += [
        "        out_ = []",
        "        append_ = out_.append",
        "        failed_ = False",
        f"        for v_{name} in items:",
        "            try:",
        *gen.lines,
        f"                append_({ret})",
        "            except CelError as err_:",
        "                append_(err_)",
        "                failed_ = True",
        "            except Fallback:",
        "                append_(Fallback)",
        "                failed_ = True",
        "        return out_, failed_",
        "    return _each",
    ]
    return _finish(gen, lines, source)
