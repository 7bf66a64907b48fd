"""Limiter key names: collision-free across policies, one cluster slot per pair, parseable."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratelimiter_service.keys import (
    ALGORITHM_CODES,
    hash_tag,
    limiter_key,
    limiter_keys_for_pair,
    limiter_scan_pattern,
    parse_limiter_key,
)

policy_names = st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True)
# Any text Redis can store as UTF-8: no lone surrogates.
caller_keys = st.text(st.characters(blacklist_categories=["Cs"]), max_size=60) | st.sampled_from(
    ["", ":", "{", "}", "{}", "a}:{b", "%7B", "%", "ключ", "🔑", "x" * 100_000]
)
algorithms = st.sampled_from(sorted(ALGORITHM_CODES))


@given(policy_names, caller_keys, policy_names, caller_keys, algorithms)
def test_distinct_pairs_never_share_a_redis_key(p1: str, k1: str, p2: str, k2: str, algorithm: str) -> None:
    if (p1, k1) != (p2, k2):
        assert limiter_key("rl", p1, k1, algorithm) != limiter_key("rl", p2, k2, algorithm)


@given(policy_names, caller_keys)
def test_every_key_of_a_pair_hashes_to_one_slot_and_parses_back(policy: str, key: str) -> None:
    names = limiter_keys_for_pair("rl", policy, key)
    assert len({hash_tag(name) for name in names}) == 1
    for name, algorithm in zip(names, ALGORITHM_CODES):
        # The tag is exactly what this module wrote: the caller's braces never open or close it.
        assert hash_tag(name).count(":") == 1
        assert fnmatch.fnmatchcase(name, limiter_scan_pattern("rl"))
        parsed = parse_limiter_key("rl", name)
        assert parsed is not None
        assert (parsed.policy, parsed.key, parsed.algorithm) == (policy, key, algorithm)
        assert parse_limiter_key("rl", name.encode("ascii")) == parsed


def test_pairs_that_would_collide_with_naive_joining_do_not() -> None:
    # "a" + ":" + "b:c" and "a:b" + ":" + "c" join to the same text; policies cannot hold ":".
    assert limiter_key("rl", "a", "b:c", "gcra") != limiter_key("rl", "a.b", "c", "gcra")
    assert limiter_key("rl", "p", "}{", "sliding_window") == "rl:lim:{p:%7D%7B}:sw"


@pytest.mark.parametrize(
    "name",
    [
        "rl:{pol}:data",
        "rl:{pol}:version",
        "rl:nodes:node-1",
        "rl:{nodes}:node-1",
        "rl:lim:{p:abc}:zz",
        "rl:lim:{p:a b}:sw",
        "rl:lim:{p:%7b}:sw",  # not canonical: this module writes %7B
        "rl:lim:{p:%FF}:sw",  # not UTF-8
        "rl:lim:{p:k}:sw:extra",
        "other:lim:{p:k}:sw",
        "rl:lim:{bad name:k}:sw",
    ],
)
def test_names_this_module_did_not_write_are_not_limiter_keys(name: str) -> None:
    assert parse_limiter_key("rl", name) is None


def test_scan_pattern_escapes_glob_characters_of_the_prefix() -> None:
    pattern = limiter_scan_pattern("a*[b]")
    assert pattern == "a\\*\\[b\\]:lim:{*"


@pytest.mark.parametrize("policy", ["", "a:b", "x" * 65, "sp ace", "{tag}"])
def test_bad_policy_names_are_refused(policy: str) -> None:
    with pytest.raises(ValueError, match="policy name"):
        limiter_key("rl", policy, "k", "gcra")


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown algorithm"):
        limiter_key("rl", "p", "k", "leaky")
