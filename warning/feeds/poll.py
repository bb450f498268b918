"""Polling a feed once: fetch it, fetch and parse each entry's CAP, de-duplicate, match the rules.

Every CAP message is decided once, across polls and restarts: its `sender,identifier,sent` (sent in
UTC) is a field of the Redis hash `feeds:seen`, claimed with HSETNX before anything acts on it and
then overwritten with the decision. A claim left by a poller that died is taken over after
`claim_timeout`. Decisions:

- `duplicate`  the message was decided before (the reason says how);
- `ignored`    status Test/Draft/System, msgType Ack/Error, or no rule matches;
- `draft`/`issue`  a rule matched (the first in order wins), or the message is an Update or Cancel of
  one we drafted or issued: it follows that rule, so a downgrade or a bare Cancel still reaches the
  alert we made; when both apply, `issue` wins over `draft`;
- `invalid`    the CAP is refused by the parser, the entry has no CAP, or `on_match` refused it;
- `fetch_failed`  the feed or the CAP could not be fetched safely (not recorded: the next poll retries).

The poller never creates alerts itself: `on_match(alert, rule, decision)` does, and returns our id.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from warning.cap import MAX_BYTES as CAP_MAX_BYTES
from warning.cap import CapAlert, CapInfo, MsgType, Severity, parse_cap
from warning.cap.document import choose_info
from warning.errors import AlertError, CapError, FetchError, UsageError
from warning.feeds.entries import FeedEntry, parse_entries
from warning.feeds.fetch import Resolver, fetch
from warning.feeds.settings import Action, FeedRule, FeedSettings
from warning.i18n import t
from warning.model import AlertStatus, Level
from warning.store import Store

Decision = Literal["duplicate", "ignored", "draft", "issue", "invalid", "fetch_failed"]
OnMatch = Callable[[CapAlert, FeedRule, Action], Awaitable[str]]
"""`(alert, rule, decision) -> our alert id`: creates the draft or issues the alert (the alert service)."""

NOT_PASSED_ON = frozenset({AlertStatus.TEST, AlertStatus.DRAFT, AlertStatus.SYSTEM})
SEVERITY_LEVELS = {
    Severity.MINOR: Level.BLUE,
    Severity.MODERATE: Level.YELLOW,
    Severity.SEVERE: Level.ORANGE,
    Severity.EXTREME: Level.RED,
}
COLOUR_WORDS = {"红色": Level.RED, "橙色": Level.ORANGE, "黄色": Level.YELLOW, "蓝色": Level.BLUE}
GEOCODE_LEVELS = (2, 4, 6, 9, 12)  # province, city, county, township, village digits of a 12-digit code
PENDING = "pending"
FETCH_CONCURRENCY = 4  # CAP documents fetched at once from one feed


@dataclass(frozen=True)
class PollOutcome:
    """What one poll did with one feed entry (or with the feed itself, when `entry_id` is empty)."""

    feed: str
    entry_id: str
    cap_ref: str  # the CAP's URL, or `{feed url}#{entry id}` for a CAP embedded in the feed
    decision: Decision
    reason: str
    alert: CapAlert | None = None
    rule: FeedRule | None = None
    alert_id: str = ""  # ours, when on_match made or changed an alert


class FeedPoller:
    """Polls configured feeds into decisions, remembering in Redis which CAP messages it has decided."""

    def __init__(
        self,
        store: Store,
        on_match: OnMatch,
        *,
        resolver: Resolver | None = None,
        claim_timeout: float = 600.0,
    ) -> None:
        self._redis = store.redis
        self._seen_key = store.keys.key("feeds", "seen")
        self._on_match = on_match
        self._resolver = resolver
        self._claim_timeout = claim_timeout

    async def poll_once(self, feed: FeedSettings) -> list[PollOutcome]:
        """Fetch `feed` and decide each of its entries; outcomes come in feed order.

        The entries' CAP documents are fetched concurrently (at most `FETCH_CONCURRENCY` at a time),
        then decided one by one, oldest `sent` first, so an Alert is decided before its Update even
        when the feed lists the newest first. A feed that cannot be fetched or read gives one
        `fetch_failed` outcome with an empty `entry_id`.

        Raises:
            Exception: whatever `on_match` raises other than `UsageError`/`AlertError` (a bug or an
                outage); the message's claim is released first, so the next poll retries it.
        """
        try:
            body = await self._fetch(feed, feed.url, feed.max_bytes)
            entries = parse_entries(body, feed.format, feed.url)
        except FetchError as exc:
            return [PollOutcome(feed.name, "", feed.url, "fetch_failed", str(exc))]
        slots = asyncio.Semaphore(FETCH_CONCURRENCY)
        read = await asyncio.gather(*(self._read_entry(feed, entry, slots) for entry in entries))
        outcomes: dict[int, PollOutcome] = {}
        parsed: list[tuple[int, CapAlert]] = []
        for index, result in enumerate(read):
            if isinstance(result, PollOutcome):
                outcomes[index] = result
            else:
                parsed.append((index, result))
        for index, alert in sorted(parsed, key=lambda item: item[1].sent):
            outcomes[index] = await self._decide_entry(feed, entries[index], alert)
        return [outcomes[index] for index in range(len(entries))]

    async def _fetch(self, feed: FeedSettings, url: str, max_bytes: int) -> bytes:
        return await fetch(
            url,
            allowed_hosts=feed.allowed_hosts,
            allow_private=feed.allow_private,
            max_bytes=max_bytes,
            timeout=feed.timeout,
            resolver=self._resolver,
        )

    async def _read_entry(
        self, feed: FeedSettings, entry: FeedEntry, slots: asyncio.Semaphore
    ) -> CapAlert | PollOutcome:
        """The entry's CAP message, or the `invalid`/`fetch_failed` outcome that ends it."""
        data = entry.inline_cap
        if data is None:
            if not entry.cap_url:
                return _outcome(feed, entry, "invalid", t("条目没有 CAP 链接", "the entry has no CAP link"))
            try:
                async with slots:
                    data = await self._fetch(feed, entry.cap_url, min(feed.max_bytes, CAP_MAX_BYTES))
            except FetchError as exc:
                return _outcome(feed, entry, "fetch_failed", str(exc))
        try:
            return parse_cap(data)
        except CapError as exc:
            return _outcome(feed, entry, "invalid", f"{exc} [{exc.element}: {exc.rule}]")

    async def _decide_entry(self, feed: FeedSettings, entry: FeedEntry, alert: CapAlert) -> PollOutcome:
        """Claim the message, decide it, record the decision."""
        key = message_key(alert)
        earlier = await self._claim(key)
        if earlier is not None:
            reason = t("已处理过（{d}）", "already decided ({d})", d=earlier.get("decision", "?"))
            return _outcome(feed, entry, "duplicate", reason, alert)
        try:
            decision, reason, index, alert_id = await self._decide_alert(feed, alert)
        except BaseException:
            await self._redis.hdel(self._seen_key, key)
            raise
        await self._record(key, feed, decision, index, alert_id)
        rule = feed.rules[index] if index is not None else None
        return _outcome(feed, entry, decision, reason, alert, rule, alert_id)

    async def _decide_alert(
        self, feed: FeedSettings, alert: CapAlert
    ) -> tuple[Decision, str, int | None, str]:
        """(decision, reason, rule index, our alert id) for a message nobody has decided yet."""
        if alert.status in NOT_PASSED_ON:
            return (
                "ignored",
                t("状态为 {s}，不向公众发布", "status {s} never reaches the public", s=alert.status),
                None,
                "",
            )
        if alert.msg_type in (MsgType.ACK, MsgType.ERROR):
            return (
                "ignored",
                t("消息类型 {m} 无需处理", "msgType {m} needs no action", m=alert.msg_type),
                None,
                "",
            )
        matched = matching_rule(alert, feed.rules)
        followed = None
        if alert.msg_type in (MsgType.UPDATE, MsgType.CANCEL):
            followed = await self._followed_rule(alert, feed)
        if matched is None and followed is None:
            return "ignored", t("没有符合的规则", "no rule matches"), None, ""
        # The stronger of the two wins: an Update of an issued alert stays issued even when it no
        # longer meets the rule (a downgrade), and one that now meets an `issue` rule is issued.
        if followed is None or (
            matched is not None
            and (feed.rules[matched].action == "issue" or feed.rules[followed].action == "draft")
        ):
            assert matched is not None
            index, reason = matched, t("符合第 {n} 条规则", "matches rule {n}", n=matched + 1)
        else:
            index, reason = followed, t("跟随所引用的消息", "follows the message it references")
        action = feed.rules[index].action
        if action == "issue" and alert.msg_type is MsgType.ALERT and _incomplete(alert):
            # A real warning without a headline or instruction is not dropped: a person completes it.
            action = "draft"
            reason += t(
                "；缺少 headline 或 instruction，已存为草稿待人工补全",
                "; it lacks a headline or instruction, so it is kept as a draft for a person to complete",
            )
        try:
            alert_id = await self._on_match(alert, feed.rules[index], action)
        except (UsageError, AlertError) as exc:
            return "invalid", str(exc), index, ""
        return action, reason, index, alert_id

    async def _followed_rule(self, alert: CapAlert, feed: FeedSettings) -> int | None:
        """The rule under which a message this one references was drafted or issued, if any."""
        for reference in alert.references:
            raw = await self._redis.hget(
                self._seen_key, _key(reference.sender, reference.identifier, reference.sent)
            )
            record = json.loads(raw) if raw else {}
            index = record.get("rule")
            if (
                record.get("decision") in ("draft", "issue")
                and record.get("feed") == feed.name
                and isinstance(index, int)
                and 0 <= index < len(feed.rules)
            ):
                return index
        return None

    async def _claim(self, key: str) -> dict[str, object] | None:
        """Claim `key` for this poller; the earlier record instead if someone decided or holds it."""
        pending = json.dumps({"decision": PENDING, "at": time.time()})
        if await self._redis.hsetnx(self._seen_key, key, pending):
            return None
        raw = await self._redis.hget(self._seen_key, key)
        record: dict[str, object] = json.loads(raw) if raw else {}
        claimed_at = record.get("at")
        stale = isinstance(claimed_at, int | float) and time.time() - claimed_at > self._claim_timeout
        if record.get("decision") == PENDING and stale:
            # The poller that claimed it died before deciding; the scheduler lock makes us the only one now.
            await self._redis.hset(self._seen_key, key, pending)
            return None
        return record

    async def _record(
        self, key: str, feed: FeedSettings, decision: Decision, index: int | None, alert_id: str
    ) -> None:
        record = {
            "decision": decision,
            "rule": index,
            "feed": feed.name,
            "alert_id": alert_id,
            "at": time.time(),
        }
        await self._redis.hset(self._seen_key, key, json.dumps(record))


def _outcome(
    feed: FeedSettings,
    entry: FeedEntry,
    decision: Decision,
    reason: str,
    alert: CapAlert | None = None,
    rule: FeedRule | None = None,
    alert_id: str = "",
) -> PollOutcome:
    cap_ref = entry.cap_url or feed.url
    if entry.inline_cap is not None and feed.format != "cap":
        cap_ref = f"{feed.url}#{entry.id}"
    return PollOutcome(feed.name, entry.id, cap_ref, decision, reason, alert, rule, alert_id)


def _incomplete(alert: CapAlert) -> bool:
    """Whether the `<info>` we would use lacks the headline or instruction every sent alert needs."""
    info = choose_info(alert)
    return info is None or not info.headline.strip() or not info.instruction.strip()


def message_key(alert: CapAlert) -> str:
    """The de-duplication key of a CAP message: `sender,identifier,sent` with `sent` in UTC."""
    return _key(alert.sender, alert.identifier, alert.sent)


def _key(sender: str, identifier: str, sent: datetime) -> str:
    return f"{sender},{identifier},{sent.astimezone(UTC).isoformat()}"


def matching_rule(alert: CapAlert, rules: tuple[FeedRule, ...]) -> int | None:
    """The index of the first rule that one of the alert's `<info>` blocks satisfies entirely."""
    for index, rule in enumerate(rules):
        if any(_satisfies(info, rule) for info in alert.infos):
            return index
    return None


def info_level(info: CapInfo) -> Level | None:
    """The colour level of an `<info>`: from its severity, else from a colour word in its text."""
    level = SEVERITY_LEVELS.get(info.severity)
    if level is not None:
        return level
    text = " ".join((info.event, info.headline, *(p.value for p in info.parameters)))
    found = [lvl for word, lvl in COLOUR_WORDS.items() if word in text]
    return max(found, key=lambda lvl: lvl.rank) if found else None


def _satisfies(info: CapInfo, rule: FeedRule) -> bool:
    if rule.events:
        names = {info.event.casefold(), *(code.value.casefold() for code in info.event_codes)}
        if not any(event.casefold() in names for event in rule.events):
            return False
    if rule.min_level is not None:
        level = info_level(info)
        if level is None or level.rank < rule.min_level.rank:
            return False
    if rule.certainties and info.certainty.value not in rule.certainties:
        return False
    if rule.area_prefixes:
        codes = [g.value.strip() for area in info.areas for g in area.geocodes if g.value.strip().isdigit()]
        if not any(_covers(code, prefix) for code in codes for prefix in rule.area_prefixes):
            return False
    return True


def _covers(code: str, prefix: str) -> bool:
    """Whether an alert geocode and one of our area prefixes overlap.

    `330327105000` lies in `330327`; `330000000000` (the whole province, zero-padded) covers `330327`.
    """
    if code.startswith(prefix):
        return True
    region = code
    for digits in GEOCODE_LEVELS:
        if digits < len(code) and not code[digits:].strip("0"):
            region = code[:digits]
            break
    return prefix.startswith(region)
