"""validate never crashes: random and mutated documents give problems, never exceptions."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config.validate import validate_file

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = yaml.safe_load((ROOT / "configs" / "ratelimiter.yaml").read_text())

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(max_size=30), st.sampled_from(["5s", "x", "item.id", "{{ x }", "${NOPE}", "http://h:1", "redis://h"]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)),
    max_leaves=20,
)


def _paths(node: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


ALL_PATHS = [p for p in _paths(SHIPPED) if p]
# libyaml's emitter: the pure-Python one took twice as long as validating the dumped config.
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _dump(doc: object) -> str:
    return yaml.dump(doc, Dumper=DUMPER, allow_unicode=True)


def _mutate(doc: object, path: tuple[object, ...], value: object, delete: bool) -> object:
    import copy

    doc = copy.deepcopy(doc)
    parent = doc
    for part in path[:-1]:
        parent = parent[part]  # type: ignore[index]
    if delete and isinstance(parent, dict):
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = value  # type: ignore[index]
    return doc


def _check(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    for problem in validate_file(path, env={}):
        assert problem.line >= 0 and problem.column >= 0
        assert problem.message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(ALL_PATHS), values, st.booleans())
def test_mutated_shipped_config_never_crashes(tmp_path: Path, path: tuple[object, ...], value: object, delete: bool) -> None:
    mutated = _mutate(SHIPPED, path, value, delete)
    _check(tmp_path, _dump(mutated))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values)
def test_random_document_never_crashes(tmp_path: Path, doc: object) -> None:
    _check(tmp_path, _dump(doc))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(list("ab:- \n\t[]{}'\"#&*!|>%@`,?${}") + ["version: 1\n", "subject:\n", "targets:\n"]), max_size=80))
def test_random_text_never_crashes(tmp_path: Path, pieces: list[str]) -> None:
    _check(tmp_path, "".join(pieces))
