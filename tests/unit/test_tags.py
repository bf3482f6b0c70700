"""Choosing tags: the version rule, the filters, newest N, the cap, pins; the tag list read from a real
registry page by page; and a section with filters mirrored through the DAG, one mapped instance per tag."""

from __future__ import annotations

import textwrap

import pytest

from dmi_provider.config import ConfigError, parse_config
from dmi_provider.errors import is_retryable
from dmi_provider.tags import TagFilter, TooManyTags, describe_filter, newest_first, select, split_pin, version

REDIS = ([f"6.2.{n}" for n in range(5)] + [f"7.0.{n}" for n in range(10)] + [f"7.2.{n}" for n in range(10)]
         + ["7.4.0", "7.4.1", "7.4.2-rc1", "7.4.1-alpine", "v7", "8.0.0", "8.0.1", "latest", "alpine", "bookworm",
            "2026-11-01", "2025-10-01", "nightly_build", "7.x"])
assert len(REDIS) == 39  # and "7.2.9-extra" pushed below makes 40


# -- the rules, without a registry ------------------------------------------------------------------------
@pytest.mark.parametrize(("tag", "expected"), [
    ("7", "7.0.0"), ("7.2", "7.2.0"), ("v1.2.3", "1.2.3"), ("1.8.0-rc.1", "1.8.0-rc.1"), ("7.4.1-alpine",
                                                                                          "7.4.1-alpine"),
    ("2026-11-01", None), ("latest", None), ("7.x", None), ("01.2.3", "1.2.3"), ("1.2.3.4", None)])
def test_which_tags_are_versions(tag, expected):
    assert version(tag) == expected

def test_newest_first_orders_versions_then_names():
    assert newest_first(["latest", "7.2", "2025-10-01", "7.10.0", "7.9.9", "7.10.0-rc1", "v7.10.0", "2026-11-01"]) == [
        "v7.10.0", "7.10.0", "7.10.0-rc1", "7.9.9", "7.2", "latest", "2026-11-01", "2025-10-01"]

def test_each_filter_alone_and_combined():
    assert select(REDIS, [], TagFilter(semver=">=7 <8", newest=3)).tags == ["7.4.1", "7.4.0", "7.2.9"]
    with_pre = select(REDIS, [], TagFilter(semver="~7.4", prerelease=True))
    assert with_pre.tags == ["7.4.2-rc1", "7.4.1", "7.4.1-alpine", "7.4.0"]
    assert select(REDIS, [], TagFilter(semver="^8")).tags == ["8.0.1", "8.0.0"]
    only = select(REDIS, [], TagFilter(matching=(r"7\.2\.[0-2]", "alpine"), excluding=(r".*1",)))
    assert only.tags == ["7.2.2", "7.2.0", "alpine"] and only.removed["tags-excluding"] == ["7.2.1"]
    dates = select(REDIS, ["latest"], TagFilter(matching=(r"\d{4}-\d{2}-\d{2}",), newest=1))
    assert dates.tags == ["latest", "2026-11-01"]  # named tags always, then the newest date
    assert dates.removed == {"tags-matching": [t for t in REDIS if t[:2] != "20"], "tags-newest": ["2025-10-01"]}
    assert select(REDIS, [], TagFilter(semver=">=9")).tags == []

def test_the_cap_is_a_clear_error_that_does_not_retry():
    with pytest.raises(TooManyTags, match="39 tags match, more than tags-max = 10") as exc:
        select(REDIS, [], TagFilter(matching=(".*",), max=10))
    assert not is_retryable(exc.value)

def test_pins_and_describe():
    digest = "sha256:" + "a" * 64
    assert split_pin(f"1.7.0@{digest}") == ("1.7.0", digest)
    assert split_pin(f"@{digest}") == (None, digest) and split_pin("1.7.0") == ("1.7.0", None)
    assert describe_filter(TagFilter(semver=">=7 <8", newest=3, excluding=("rc",))) == (
        "tags-excluding rc, tags-semver >=7 <8, tags-newest 3")

# -- config.ini ---------------------------------------------------------------------------------------------
def test_filter_keys_parse_and_pins_keep_their_tag():
    digest = "sha256:" + "b" * 64
    config = parse_config(textwrap.dedent(f"""
        [DEFAULT]
        refresh = 1d
        project = m
        [redis]
        image = redis
        tags-semver = >=7 <8
        tags-newest = 3
        tags-matching = 7\\.\\d{{1,2}}\\.\\d+ latest
        tags-excluding = .*-rc.*
        tags-max = 20
        tags-prerelease = yes
        [pinned]
        image = proxyv2
        tags = 1.7.0@{digest}, 1.8.0
        [digest-only]
        image = pilot
        tag = @{digest}
        target-tag = stable
    """), environ={})
    redis = config.section("redis")
    assert redis.selection.filter == TagFilter((r"7\.\d{1,2}\.\d+", "latest"), (".*-rc.*",), ">=7 <8", True, 3, 20)
    assert redis.selection.tags == () and redis.pairs() == ()
    assert config.section("pinned").pairs() == ((f"1.7.0@{digest}", "1.7.0"), ("1.8.0", "1.8.0"))
    assert config.section("digest-only").pairs() == ((f"@{digest}", "stable"),)

def test_named_tags_are_capped_too():
    tags = ", ".join(f"1.{n}" for n in range(12))
    with pytest.raises(ConfigError) as exc:
        parse_config(f"[DEFAULT]\nrefresh = 1d\n[a]\nimage = a\nproject = p\ntags-max = 10\ntags = {tags}\n",
                     environ={})
    (issue,) = exc.value.issues
    assert str(issue).endswith("names 12 tags, more than tags-max = 10: split the section or raise tags-max "
                               "(at most 1000)")

def test_bad_tag_keys_are_clear_errors():
    with pytest.raises(ConfigError) as exc:
        parse_config(textwrap.dedent("""
            [DEFAULT]
            refresh = 1d
            project = m
            [a]
            image = a
            tags-matching = 7.( ok
            tags-semver = >=seven
            tags-newest = 0
            [b]
            image = b
            tag = 1.7.0@sha256:abc
            tags-max = 5000
            [c]
            image = c
            tag = @sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc
            [d]
            image = d
            tags-semver = ^1
            target-tag = x
        """), environ={})
    assert [str(i) for i in exc.value.issues] == [
        "config.ini:7: section 'a': tags-matching = '7.( ok': '7.(' is not a regular expression: missing ), unterminated "
        "subpattern at position 2",
        "config.ini:8: section 'a': tags-semver = '>=seven': '>=seven' is not a semver range: e.g. >=1.20 <2, ~1.7, ^3, 1.2.x",
        "config.ini:9: section 'a': tags-newest = '0': expected a whole number from 1 to 1000",
        "config.ini:12: section 'b': tag = '1.7.0@sha256:abc': '1.7.0@sha256:abc' is not TAG@sha256:<64 hex> or "
        "@sha256:<64 hex> (a pinned digest)",
        "config.ini:13: section 'b': tags-max = '5000': expected a whole number from 1 to 1000",
        "config.ini:16: section 'c': tag = '@sha256:" + "c" * 64 + "': a digest without a tag (@sha256:…) needs target-tag: "
        "the tag to write at the target",
        "config.ini:20: section 'd': target-tag = 'x': cannot rename tags chosen by tags-* filters: remove target-tag or the "
        "filters",
    ]
