"""A PromQL subset over scrape history: what TiKV/PD dashboards and alert rules use.

Supported: selectors with `=`, `!=`, `=~`, `!~`; range selectors `[1m]`; number literals; unary
minus; `+ - * / % ^`; comparisons (with `bool`); `and`, `or`, `unless`; `on(...)`/`ignoring(...)`
one-to-one matching; aggregations `sum min max avg count` with `by`/`without`; functions `rate
irate increase changes delta *_over_time histogram_quantile abs ceil floor clamp_min clamp_max
time vector scalar absent`. Anything else is a parse error (HTTP 400, bad_data).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Sequence, Union

from .series import SeriesKey

Labels = dict[str, str]
Snapshot = tuple[float, dict[SeriesKey, float]]
LOOKBACK = 300.0


class PromQLError(Exception):
    """The query does not parse (bad_data) or cannot be evaluated (execution)."""

    def __init__(self, message: str, kind: str = "bad_data") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Sample:
    labels: tuple[tuple[str, str], ...]
    value: float

    @property
    def metric(self) -> Labels:
        return dict(self.labels)


@dataclass(frozen=True)
class Series:
    labels: tuple[tuple[str, str], ...]
    points: tuple[tuple[float, float], ...]


Value = Union[float, list[Sample], list[Series]]

# --- lexer ------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<duration>(?:\d+(?:ms|s|m|h|d|w|y))+)(?![\w.])
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[Ii]nf|NaN)(?![\w.])
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>==|!=|<=|>=|=~|!~|[-+*/%^<>=,(){}\[\]])
    )""",
    re.VERBOSE,
)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        match = _TOKEN.match(source, pos)
        if not match or match.end() == pos:
            raise PromQLError(f"parse error at char {pos + 1}: unexpected character {source[pos:].lstrip()[:1]!r}")
        kind = match.lastgroup or "op"
        tokens.append(Token(kind, match.group(kind), match.start(kind)))
        pos = match.end()
    tokens.append(Token("eof", "", len(source)))
    return tokens


def parse_duration(text: str) -> float:
    return sum(float(n) * _DURATION_UNITS[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text))


# --- AST --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True)
class Number:
    value: float


@dataclass(frozen=True)
class Selector:
    matchers: tuple[Matcher, ...]
    range: float | None = None


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[object, ...]


@dataclass(frozen=True)
class Aggregate:
    op: str
    expr: object
    grouping: tuple[str, ...]
    without: bool


@dataclass(frozen=True)
class Unary:
    expr: object


@dataclass(frozen=True)
class Binary:
    op: str
    lhs: object
    rhs: object
    bool_mode: bool = False
    on: tuple[str, ...] | None = None
    ignoring: tuple[str, ...] = ()


AGGREGATIONS = {"sum", "min", "max", "avg", "count"}
RANGE_FUNCTIONS = {
    "rate",
    "irate",
    "increase",
    "changes",
    "delta",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
}
OTHER_FUNCTIONS = {"histogram_quantile", "abs", "ceil", "floor", "clamp_min", "clamp_max", "time", "vector", "scalar", "absent"}
_PRECEDENCE = [("or",), ("and", "unless"), ("==", "!=", "<=", "<", ">=", ">"), ("+", "-"), ("*", "/", "%")]
COMPARISONS = {"==", "!=", "<=", "<", ">=", ">"}


class Parser:
    def __init__(self, source: str) -> None:
        self.tokens = tokenize(source)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, text: str) -> Token:
        token = self.next()
        if token.text != text:
            found = token.text or "end of input"
            raise PromQLError(f"parse error at char {token.pos + 1}: expected {text!r}, found {found!r}")
        return token

    def fail(self, token: Token, what: str) -> PromQLError:
        found = token.text or "end of input"
        return PromQLError(f"parse error at char {token.pos + 1}: unexpected {found!r} {what}")

    def parse(self) -> object:
        expr = self.binary(0)
        if self.peek().kind != "eof":
            raise self.fail(self.peek(), "after a complete expression")
        return expr

    def binary(self, level: int) -> object:
        if level == len(_PRECEDENCE):
            return self.power()
        lhs = self.binary(level + 1)
        while self.peek().text in _PRECEDENCE[level] and self.peek().kind in ("op", "ident"):
            op = self.next().text
            bool_mode = False
            if self.peek().text == "bool":
                if op not in COMPARISONS:
                    raise self.fail(self.peek(), "(bool only applies to comparisons)")
                self.next()
                bool_mode = True
            on, ignoring = self.matching()
            rhs = self.binary(level + 1)
            lhs = Binary(op, lhs, rhs, bool_mode, on, ignoring)
        return lhs

    def matching(self) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
        on: tuple[str, ...] | None = None
        ignoring: tuple[str, ...] = ()
        if self.peek().text == "on":
            self.next()
            on = self.label_list()
        elif self.peek().text == "ignoring":
            self.next()
            ignoring = self.label_list()
        if self.peek().text in ("group_left", "group_right"):
            raise self.fail(self.peek(), "(many-to-one matching is not supported by pdsim)")
        return on, ignoring

    def power(self) -> object:
        base = self.unary()
        if self.peek().text == "^":
            self.next()
            on, ignoring = self.matching()
            return Binary("^", base, self.power(), False, on, ignoring)
        return base

    def unary(self) -> object:
        if self.peek().text in ("-", "+"):
            sign = self.next().text
            inner = self.unary()
            return Unary(inner) if sign == "-" else inner
        return self.primary()

    def label_list(self) -> tuple[str, ...]:
        self.expect("(")
        names: list[str] = []
        while self.peek().text != ")":
            token = self.next()
            if token.kind != "ident":
                raise self.fail(token, "in label list")
            names.append(token.text)
            if self.peek().text == ",":
                self.next()
        self.expect(")")
        return tuple(names)

    def primary(self) -> object:
        token = self.peek()
        if token.kind == "number":
            self.next()
            return Number(float(token.text))
        if token.text == "(":
            self.next()
            inner = self.binary(0)
            self.expect(")")
            if self.peek().text == "[":
                raise self.fail(self.peek(), "(subqueries are not supported by pdsim)")
            return inner
        if token.text == "{":
            return self.selector(None)
        if token.kind == "ident":
            self.next()
            if token.text in AGGREGATIONS:
                return self.aggregate(token.text)
            if self.peek().text == "(":
                if token.text not in RANGE_FUNCTIONS | OTHER_FUNCTIONS:
                    raise PromQLError(f"parse error at char {token.pos + 1}: unknown function with name {token.text!r}")
                return self.call(token.text)
            return self.selector(token.text)
        raise self.fail(token, "where an expression was expected")

    def aggregate(self, op: str) -> object:
        grouping: tuple[str, ...] = ()
        without = False
        if self.peek().text in ("by", "without"):
            without = self.next().text == "without"
            grouping = self.label_list()
        self.expect("(")
        expr = self.binary(0)
        self.expect(")")
        if self.peek().text in ("by", "without"):
            without = self.next().text == "without"
            grouping = self.label_list()
        return Aggregate(op, expr, grouping, without)

    def call(self, name: str) -> object:
        self.expect("(")
        args: list[object] = []
        while self.peek().text != ")":
            args.append(self.binary(0))
            if self.peek().text == ",":
                self.next()
            elif self.peek().text != ")":
                raise self.fail(self.peek(), "in function arguments")
        self.expect(")")
        return Call(name, tuple(args))

    def selector(self, name: str | None) -> object:
        matchers: list[Matcher] = []
        if name is not None:
            matchers.append(Matcher("__name__", "=", name))
        if self.peek().text == "{":
            self.next()
            while self.peek().text != "}":
                label = self.next()
                if label.kind != "ident":
                    raise self.fail(label, "in label matchers")
                op = self.next()
                if op.text not in ("=", "!=", "=~", "!~"):
                    raise self.fail(op, "in label matchers (expected =, !=, =~ or !~)")
                value = self.next()
                if value.kind != "string":
                    raise self.fail(value, "in label matchers (expected a quoted string)")
                text = bytes(value.text[1:-1], "utf-8").decode("unicode_escape")
                if op.text in ("=~", "!~"):
                    try:
                        re.compile(text)
                    except re.error as exc:
                        raise PromQLError(f"parse error: invalid regular expression {text!r}: {exc}") from None
                matchers.append(Matcher(label.text, op.text, text))
                if self.peek().text == ",":
                    self.next()
            self.expect("}")
        if not matchers or all(m.op in ("=~", "!~") and re.fullmatch(m.value, "") for m in matchers):
            raise PromQLError("parse error: vector selector must contain at least one non-empty matcher")
        rng = None
        if self.peek().text == "[":
            self.next()
            token = self.next()
            if token.kind != "duration":
                raise self.fail(token, "(expected a duration such as 1m in a range selector)")
            rng = parse_duration(token.text)
            self.expect("]")
        return Selector(tuple(matchers), rng)


def parse(source: str) -> object:
    if not source.strip():
        raise PromQLError("parse error: no expression found in input")
    return Parser(source).parse()


# --- evaluation -------------------------------------------------------------------------


def _drop_name(labels: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in labels if k != "__name__")


def _arith(op: str, a: float, b: float) -> float:
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            if b == 0:
                return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
            return a / b
        if op == "%":
            return math.fmod(a, b) if b != 0 else math.nan
        if op == "^":
            return math.pow(a, b)
    except (OverflowError, ValueError):
        return math.nan
    raise PromQLError(f"unsupported operator {op}")


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _extrapolated(points: Sequence[tuple[float, float]], start: float, end: float, *, counter: bool, rate: bool) -> float | None:
    """Prometheus' extrapolatedRate (promql/functions.go)."""
    if len(points) < 2:
        return None
    result = points[-1][1] - points[0][1]
    if counter:
        for (_, prev), (_, cur) in zip(points, points[1:]):
            if cur < prev:
                result += prev
    first_t, first_v = points[0]
    last_t = points[-1][0]
    sampled = last_t - first_t
    if sampled <= 0:
        return None
    to_start = first_t - start
    to_end = end - last_t
    average = sampled / (len(points) - 1)
    if counter and result > 0 and first_v >= 0:
        to_zero = sampled * (first_v / result)
        to_start = min(to_start, to_zero)
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    result *= interval / sampled
    return result / (end - start) if rate else result


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' bucketQuantile over (upper bound, cumulative count) pairs."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets)
    if not buckets or buckets[-1][0] != math.inf:
        return math.nan
    merged: list[list[float]] = []
    for bound, count in buckets:
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    for i in range(1, len(merged)):  # ensure monotonic counts
        merged[i][1] = max(merged[i][1], merged[i - 1][1])
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = next(i for i, (_, count) in enumerate(merged) if count >= rank)
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[b][0], merged[b][1]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    if count == 0:  # q = 0 over an empty first bucket: Go's 0/0 would give NaN; the bound is the answer
        return start
    return start + (end - start) * (rank / count)


class Evaluator:
    def __init__(self, history: Sequence[Snapshot], at: float) -> None:
        self.history = history
        self.at = at

    def eval(self, node: object) -> Value:
        if isinstance(node, Number):
            return node.value
        if isinstance(node, Selector):
            return self.select(node)
        if isinstance(node, Unary):
            inner = self.eval(node.expr)
            if isinstance(inner, float):
                return -inner
            return [Sample(_drop_name(s.labels), -s.value) for s in self.instant(inner, "unary minus")]
        if isinstance(node, Aggregate):
            return self.aggregate(node)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Binary):
            return self.binary(node)
        raise PromQLError(f"cannot evaluate {node!r}", "execution")

    @staticmethod
    def instant(value: Value, where: str) -> list[Sample]:
        if isinstance(value, float):
            raise PromQLError(f"expected instant vector in {where}, got scalar")
        if value and isinstance(value[0], Series):
            raise PromQLError(f"expected instant vector in {where}, got range vector")
        return value  # type: ignore[return-value]

    def select(self, node: Selector) -> list[Sample] | list[Series]:
        if node.range is None:
            snapshot = next((snap for snap in reversed(self.history) if snap[0] <= self.at), None)
            if snapshot is None or snapshot[0] <= self.at - LOOKBACK:
                return []
            return [
                Sample(key, value)
                for key, value in snapshot[1].items()
                if all(m.matches(dict(key)) for m in node.matchers)
            ]
        start = self.at - node.range
        points: dict[SeriesKey, list[tuple[float, float]]] = {}
        wanted: dict[SeriesKey, bool] = {}
        for t, values in self.history:
            if not start < t <= self.at:
                continue
            for key, value in values.items():
                hit = wanted.get(key)
                if hit is None:
                    hit = wanted[key] = all(m.matches(dict(key)) for m in node.matchers)
                if hit:
                    points.setdefault(key, []).append((t, value))
        return [Series(key, tuple(pts)) for key, pts in points.items()]

    def range_arg(self, node: Call) -> list[Series]:
        if len(node.args) != 1 or not isinstance(node.args[0], Selector) or node.args[0].range is None:
            raise PromQLError(f"expected a range vector selector such as x[1m] as the argument of {node.name}")
        return self.eval(node.args[0])  # type: ignore[return-value]

    def call(self, node: Call) -> Value:
        name = node.name
        if name in RANGE_FUNCTIONS:
            selector = node.args[0] if node.args else None
            series = self.range_arg(node)
            window = selector.range if isinstance(selector, Selector) and selector.range else 0.0
            out: list[Sample] = []
            for s in series:
                value = self.range_function(name, s.points, window)
                if value is not None:
                    out.append(Sample(_drop_name(s.labels), value))
            return out
        args = [self.eval(a) for a in node.args]
        if name == "time":
            return self.at
        if name == "histogram_quantile":
            if len(args) != 2 or not isinstance(args[0], float):
                raise PromQLError("histogram_quantile(q, vector) expects a scalar and an instant vector")
            return self.histogram_quantile(args[0], self.instant(args[1], name))
        if name == "vector":
            if len(args) != 1 or not isinstance(args[0], float):
                raise PromQLError("vector(s) expects a scalar")
            return [Sample((), args[0])]
        if len(args) < 1:
            raise PromQLError(f"{name} expects an argument")
        vector = self.instant(args[0], name)
        if name == "scalar":
            return vector[0].value if len(vector) == 1 else math.nan
        if name == "absent":
            return [] if vector else [Sample((), 1.0)]
        unary: dict[str, Callable[[float], float]] = {"abs": abs, "ceil": math.ceil, "floor": math.floor}
        if name in unary:
            return [Sample(_drop_name(s.labels), float(unary[name](s.value)) if math.isfinite(s.value) else s.value) for s in vector]
        if len(args) != 2 or not isinstance(args[1], float):
            raise PromQLError(f"{name}(vector, scalar) expects a scalar second argument")
        bound = args[1]
        pick = max if name == "clamp_min" else min
        return [Sample(_drop_name(s.labels), pick(s.value, bound)) for s in vector]

    def range_function(self, name: str, points: Sequence[tuple[float, float]], window: float) -> float | None:
        values = [v for _, v in points]
        if not values:
            return None
        start = self.at - window
        if name == "rate":
            return _extrapolated(points, start, self.at, counter=True, rate=True)
        if name == "increase":
            return _extrapolated(points, start, self.at, counter=True, rate=False)
        if name == "delta":
            return _extrapolated(points, start, self.at, counter=False, rate=False)
        if name == "irate":
            if len(points) < 2:
                return None
            (t0, v0), (t1, v1) = points[-2], points[-1]
            return ((v1 - v0) if v1 >= v0 else v1) / (t1 - t0)
        if name == "changes":
            return float(sum(1 for a, b in zip(values, values[1:]) if a != b))
        reducers: dict[str, Callable[[list[float]], float]] = {
            "avg_over_time": lambda v: sum(v) / len(v),
            "min_over_time": min,
            "max_over_time": max,
            "sum_over_time": sum,
            "count_over_time": lambda v: float(len(v)),
            "last_over_time": lambda v: v[-1],
        }
        return float(reducers[name](values))

    @staticmethod
    def histogram_quantile(q: float, vector: list[Sample]) -> list[Sample]:
        groups: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        for s in vector:
            labels = dict(s.labels)
            le = labels.pop("le", None)
            if le is None:
                continue
            try:
                bound = float(le)
            except ValueError:
                continue
            labels.pop("__name__", None)
            groups.setdefault(tuple(sorted(labels.items())), []).append((bound, s.value))
        return [Sample(key, bucket_quantile(q, buckets)) for key, buckets in groups.items()]

    def aggregate(self, node: Aggregate) -> list[Sample]:
        vector = self.instant(self.eval(node.expr), node.op)
        groups: dict[tuple[tuple[str, str], ...], list[float]] = {}
        for s in vector:
            labels = dict(s.labels)
            if node.without:
                key = tuple(sorted((k, v) for k, v in labels.items() if k not in node.grouping and k != "__name__"))
            else:
                key = tuple(sorted((k, v) for k, v in labels.items() if k in node.grouping))
            groups.setdefault(key, []).append(s.value)
        reduce: dict[str, Callable[[list[float]], float]] = {
            "sum": sum,
            "min": lambda v: min(v, key=lambda x: (math.isnan(x), x)),
            "max": lambda v: max(v, key=lambda x: (not math.isnan(x), x)),
            "avg": lambda v: sum(v) / len(v),
            "count": lambda v: float(len(v)),
        }
        return [Sample(key, float(reduce[node.op](values))) for key, values in groups.items()]

    def binary(self, node: Binary) -> Value:
        lhs = self.eval(node.lhs)
        rhs = self.eval(node.rhs)
        op = node.op
        if op in ("and", "or", "unless"):
            return self.set_op(node, self.instant(lhs, op), self.instant(rhs, op))
        if isinstance(lhs, float) and isinstance(rhs, float):
            if op in COMPARISONS:
                if not node.bool_mode:
                    raise PromQLError("comparisons between scalars must use BOOL modifier")
                return 1.0 if _COMPARE[op](lhs, rhs) else 0.0
            return _arith(op, lhs, rhs)
        if isinstance(lhs, float) or isinstance(rhs, float):
            vector = self.instant(rhs if isinstance(lhs, float) else lhs, op)
            scalar = lhs if isinstance(lhs, float) else rhs
            out = []
            for s in vector:
                a, b = (scalar, s.value) if isinstance(lhs, float) else (s.value, scalar)
                result = self.apply(op, a, b, node.bool_mode, keep=s.value)
                if result is not None:
                    labels = s.labels if op in COMPARISONS and not node.bool_mode else _drop_name(s.labels)
                    out.append(Sample(labels, result))
            return out
        left, right = self.instant(lhs, op), self.instant(rhs, op)
        by_sig: dict[tuple[tuple[str, str], ...], Sample] = {}
        for s in right:
            sig = self.signature(node, s.labels)
            if sig in by_sig:
                raise PromQLError(
                    "found duplicate series for the match group on the right hand-side of the operation; "
                    "many-to-many matching not allowed",
                    "execution",
                )
            by_sig[sig] = s
        out = []
        seen: set[tuple[tuple[str, str], ...]] = set()
        for s in left:
            sig = self.signature(node, s.labels)
            match = by_sig.get(sig)
            if match is None:
                continue
            if sig in seen:
                raise PromQLError("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)", "execution")
            seen.add(sig)
            result = self.apply(op, s.value, match.value, node.bool_mode, keep=s.value)
            if result is None:
                continue
            if node.on is not None:
                labels = tuple((k, v) for k, v in s.labels if k in node.on)
            else:
                labels = tuple((k, v) for k, v in s.labels if k not in node.ignoring)
                if op not in COMPARISONS or node.bool_mode:
                    labels = _drop_name(labels)
            out.append(Sample(labels, result))
        return out

    @staticmethod
    def apply(op: str, a: float, b: float, bool_mode: bool, keep: float) -> float | None:
        if op in COMPARISONS:
            hit = _COMPARE[op](a, b)
            if bool_mode:
                return 1.0 if hit else 0.0
            return keep if hit else None
        return _arith(op, a, b)

    @staticmethod
    def signature(node: Binary, labels: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        if node.on is not None:
            return tuple((k, v) for k, v in labels if k in node.on)
        return tuple((k, v) for k, v in labels if k != "__name__" and k not in node.ignoring)

    def set_op(self, node: Binary, left: list[Sample], right: list[Sample]) -> list[Sample]:
        right_sigs = {self.signature(node, s.labels) for s in right}
        if node.op == "and":
            return [s for s in left if self.signature(node, s.labels) in right_sigs]
        if node.op == "unless":
            return [s for s in left if self.signature(node, s.labels) not in right_sigs]
        left_sigs = {self.signature(node, s.labels) for s in left}
        return left + [s for s in right if self.signature(node, s.labels) not in left_sigs]


def evaluate(source: str, history: Sequence[Snapshot], at: float) -> Value:
    """Parse and evaluate `source` at unix time `at` over scrape `history` (oldest first)."""
    return Evaluator(history, at).eval(parse(source))
