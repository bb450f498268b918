"""`parse_feeds`: the `[[feeds]]` tables of the config file into frozen FeedSettings, or a ConfigError that says what to fix."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from typing import Any

import pytest

from warning.errors import ConfigError
from warning.feeds.settings import FeedRule, FeedSettings, parse_feeds
from warning.i18n import current_language, set_language
from warning.model import Level

EXAMPLE = """
[[feeds]]
name = "cma"
url = "https://Alerts.Example.cn/cap/feed.atom"
interval = "5m"
[[feeds.rules]]
events = ["11B01", "台风"]
min_level = "红色"
area_prefixes = ["330327"]
certainties = ["observed", "Likely"]
action = "issue"
audiences = ["public"]
[[feeds.rules]]
min_level = "yellow"

[[feeds]]
name = "nmc-rss"
url = "http://rss.example.cn/warnings.xml"
format = "rss"
interval = 90
allowed_hosts = ["rss.example.cn", "cap.example.cn"]
allow_private = true
max_bytes = 4096
timeout = "2.5s"
[[feeds.rules]]
action = "draft"
"""


@pytest.fixture
def english() -> Iterator[None]:
    """Messages in English for the duration of a test."""
    before = current_language()
    set_language("en")
    yield
    set_language(before)


def feeds_of(text: str) -> Any:
    return tomllib.loads(text)["feeds"]


def one_feed(**changes: object) -> list[dict[str, object]]:
    table: dict[str, object] = {"name": "cma", "url": "https://alerts.example.cn/feed.atom", "rules": [{}]}
    table.update(changes)
    return [table]


def test_example_reads_into_typed_settings_with_defaults() -> None:
    """A full example reads into the documented types, with levels, durations, hosts and defaults filled in."""
    cma, rss = parse_feeds(feeds_of(EXAMPLE), "warning.toml")
    assert cma == FeedSettings(
        name="cma",
        url="https://Alerts.Example.cn/cap/feed.atom",
        format="atom",
        interval=300.0,
        rules=(
            FeedRule(
                events=("11B01", "台风"),
                min_level=Level.RED,
                area_prefixes=("330327",),
                certainties=("Observed", "Likely"),
                action="issue",
                audiences=("public",),
            ),
            FeedRule(min_level=Level.YELLOW),
        ),
        allowed_hosts=("alerts.example.cn",),
        allow_private=False,
        max_bytes=1 << 20,
        timeout=10.0,
    )
    assert rss.format == "rss"
    assert rss.interval == 90.0
    assert rss.timeout == 2.5
    assert rss.allowed_hosts == ("rss.example.cn", "cap.example.cn")
    assert rss.allow_private is True
    assert rss.max_bytes == 4096
    assert rss.rules == (FeedRule(action="draft"),)


@pytest.mark.parametrize(
    ("word", "level"),
    [
        ("red", Level.RED),
        ("Orange", Level.ORANGE),
        ("黄色", Level.YELLOW),
        ("蓝", Level.BLUE),
        ("橙色", Level.ORANGE),
    ],
)
def test_levels_read_in_english_and_chinese(word: str, level: Level) -> None:
    """min_level accepts the colour in English or Chinese, with or without 色."""
    (feed,) = parse_feeds(one_feed(rules=[{"min_level": word}]), "f.toml")
    assert feed.rules[0].min_level is level


def test_settings_are_frozen() -> None:
    """Parsed settings cannot be changed after start-up."""
    (feed,) = parse_feeds(one_feed(), "f.toml")
    with pytest.raises(AttributeError):
        feed.url = "http://elsewhere.example/"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"feeds": 1}, "array of tables"),
        (one_feed(name="CMA feed"), "name must be an identifier"),
        (one_feed(colour="red"), "unknown key colour"),
        (one_feed(url="ftp://alerts.example.cn/feed"), "url must be an http:// or https://"),
        (one_feed(url="https:///feed"), "url must be an http:// or https://"),
        (one_feed(format="json"), "format must be atom, rss or cap"),
        (one_feed(interval="5 minutes"), "interval must be a duration"),
        (one_feed(interval="0s"), "interval must be a duration"),
        (one_feed(timeout=True), "timeout must be a duration"),
        (
            one_feed(allowed_hosts=["other.example.cn"]),
            "allowed_hosts must include the url's host alerts.example.cn",
        ),
        (one_feed(allowed_hosts="alerts.example.cn"), "allowed_hosts must be a list of non-empty strings"),
        (one_feed(allow_private="yes"), "allow_private must be true or false"),
        (one_feed(max_bytes=10), "max_bytes must be an integer between"),
        (one_feed(rules=[]), "needs at least one [[feeds.rules]]"),
        (
            one_feed(rules=[{"min_level": "purple"}]),
            "cma.rules[1] min_level must be blue, yellow, orange or red",
        ),
        (one_feed(rules=[{"action": "broadcast"}]), "action must be draft (awaits approval) or issue"),
        (one_feed(rules=[{"certainties": ["Sure"]}]), "certainties may only hold"),
        (one_feed(rules=[{"area_prefixes": ["33-03"]}]), "area_prefixes must be geocode prefixes"),
        (one_feed(rules=[{"events": "11B01"}]), "events must be a list of non-empty strings"),
        (one_feed(rules=[{}, {"severity": "red"}]), "cma.rules[2] unknown key severity"),
        (one_feed() + one_feed(), "cma name is used twice"),
    ],
)
def test_invalid_values_are_refused_naming_the_key(english: None, value: object, expected: str) -> None:
    """Each invalid table, key or value is refused with a message naming the file, the feed and what to write."""
    with pytest.raises(ConfigError) as caught:
        parse_feeds(value, "warning.toml")
    assert str(caught.value).startswith("warning.toml: [[feeds]]")
    assert expected in str(caught.value)


def test_messages_are_chinese_by_default() -> None:
    """Without a language choice the message is zh-CN and still names the key."""
    set_language("zh-CN")
    with pytest.raises(ConfigError, match="min_level 应为"):
        parse_feeds(one_feed(rules=[{"min_level": "紫色"}]), "warning.toml")
