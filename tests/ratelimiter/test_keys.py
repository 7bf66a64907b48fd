"""Limiter key names: collision-free across policies, one cluster slot per pair, parseable."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratelimiter_service.keys import (
    ALGORITHM_CODES,
    caller_tag,
    escape_key,
    hash_tag,
    limiter_key,
    limiter_keys_for_pair,
    limiter_scan_pattern,
    parse_limiter_key,
)

policy_names = st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True)
# Any text Redis can store as UTF-8: no lone surrogates.
caller_keys = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=60) | st.sampled_from(
    [":", "{", "}", "{}", "a}:{b", "u:{42}:x", "{{x}}", "%7B", "%", "ключ", "🔑", "x" * 100_000]
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
        # The tag is exactly what this module wrote (the caller's key's own tag, escaped): the
        # caller's braces never open or close it.
        assert hash_tag(name) == escape_key(caller_tag(key))
        assert fnmatch.fnmatchcase(name, limiter_scan_pattern("rl"))
        parsed = parse_limiter_key("rl", name)
        assert parsed is not None
        assert (parsed.policy, parsed.key, parsed.algorithm) == (policy, key, algorithm)
        assert parse_limiter_key("rl", name.encode("ascii")) == parsed


def test_pairs_that_would_collide_with_naive_joining_do_not() -> None:
    # "a" + ":" + "b:c" and "a:b" + ":" + "c" join to the same text; policies cannot hold ":".
    assert limiter_key("rl", "a", "b:c", "gcra") != limiter_key("rl", "a.b", "c", "gcra")
    assert limiter_key("rl", "p", "}{", "sliding_window") == "rl:lim:{%7D%7B}:p::sw"
    # The caller's own hash tag is the key's tag: its keys under every policy share a slot.
    assert limiter_key("rl", "p", "user:{42}:read", "gcra") == "rl:lim:{42}:p:user%3A%7B42%7D%3Aread:gcra"
    assert hash_tag(limiter_key("rl", "a", "user:{42}:x", "gcra")) == hash_tag(limiter_key("rl", "b", "{42}", "sliding_log"))


@pytest.mark.parametrize(
    "name",
    [
        "rl:{pol}:data",
        "rl:{pol}:version",
        "rl:nodes:node-1",
        "rl:{nodes}:node-1",
        "rl:lim:{abc}:p::zz",
        "rl:lim:{a b}:p::sw",
        "rl:lim:{%7b}:p::sw",  # not canonical: this module writes %7B
        "rl:lim:{%FF}:p::sw",  # not UTF-8
        "rl:lim:{k}:p::sw:extra",
        "other:lim:{k}:p::sw",
        "rl:lim:{k}:bad name::sw",
        "rl:lim:{x}:p:k:sw",  # the tag is not the key's
        "rl:lim:{k}:p:k:sw",  # a key that is its own tag is written once
        "rl:lim:{p:k}:sw",  # the layout before the caller's key chose the tag
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


def test_an_empty_key_has_no_redis_key() -> None:
    with pytest.raises(ValueError, match="empty"):
        limiter_key("rl", "p", "", "gcra")
