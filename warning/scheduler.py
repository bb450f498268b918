"""Periodic jobs on apscheduler, each under a Redis lock so exactly one scheduler acts at a time.

Jobs: resuming fan-outs a crashed process left half done (every `RESUME_SECONDS`; not under the lock:
each fan-out's own lease, fanout_lease.py, keeps two processes from resuming one), housekeeping (expire
alerts past `expires`) and one poll per configured feed. Any number of `warning serve` / `warning worker`
processes may run the scheduler; the lock makes the others skip that round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from redis.exceptions import RedisError

from warning.broadcast import Broadcaster
from warning.cap import CapAlert
from warning.feeds.poll import FeedPoller, PollOutcome
from warning.feeds.settings import Action, FeedRule, FeedSettings
from warning.store import Store

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 5.0
# How often every scheduler looks for fan-outs to resume: with a lease's 5 s time to live, a fan-out whose
# process died (or lost Redis) is running again within about 6 s.
RESUME_SECONDS = 1.0

# Release the lock only if we still hold it (it may have expired and been taken by another process).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# Extend the lock only if we still hold it.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def locked(
    store: Store, name: str, ttl: float, job: Callable[[], Awaitable[object]]
) -> Callable[[], Awaitable[None]]:
    """`job` wrapped so it runs only in the process that takes the Redis lock `lock:{name}` this round.

    The lock is extended every `ttl / 3` while the job runs, so a long run (an escalation sweep over a
    million residents takes minutes) keeps it, while a process that dies frees it within `ttl`.
    """
    key = store.keys.key("lock", name)
    release = store.redis.register_script(_RELEASE)
    extend = store.redis.register_script(_EXTEND)

    async def keep(token: str) -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            with contextlib.suppress(RedisError):
                await extend(keys=[key], args=[token, int(ttl * 1000)])

    async def run() -> None:
        token = uuid.uuid4().hex
        if not await store.redis.set(key, token, nx=True, px=int(ttl * 1000)):
            return
        keeper = asyncio.create_task(keep(token))
        try:
            await job()
        except Exception:
            log.exception("scheduled job %s failed; it runs again next round", name)
        finally:
            keeper.cancel()
            await release(keys=[key], args=[token])

    return run


def feed_poller(store: Store, broadcaster: Broadcaster) -> FeedPoller:
    """A poller whose matches become drafts or issued alerts through the alert service."""

    async def on_match(cap: CapAlert, rule: FeedRule, action: Action) -> str:
        outcome = await broadcaster.act_on_cap(
            cap, draft_only=action == "draft", audiences=rule.audiences, actor="feed", role="scheduler"
        )
        if outcome.action == "issued":
            await broadcaster.fan_out(outcome.alert)
        return outcome.alert.id

    return FeedPoller(store, on_match)


async def poll_feed(poller: FeedPoller, feed: FeedSettings) -> list[PollOutcome]:
    outcomes = await poller.poll_once(feed)
    for outcome in outcomes:
        if outcome.decision not in ("duplicate",):
            log.info(
                "feed entry decided",
                extra={
                    "feed": feed.name,
                    "entry": outcome.entry_id,
                    "decision": outcome.decision,
                    "reason": outcome.reason,
                    "alert": outcome.alert_id,
                },
            )
    return outcomes


def _poll_job(poller: FeedPoller, feed: FeedSettings) -> Callable[[], Awaitable[list[PollOutcome]]]:
    async def job() -> list[PollOutcome]:
        return await poll_feed(poller, feed)

    return job


def resumer(broadcaster: Broadcaster, running: set[asyncio.Task[None]]) -> Callable[[], Awaitable[None]]:
    """The resume job: each round starts resuming what has lapsed in a task of its own, so resuming a
    county's fan-out (minutes) neither holds up the next round nor makes the scheduler skip rounds."""

    async def resume() -> None:
        try:
            await broadcaster.resume_fanouts()
        except RedisError as exc:  # Redis is away: the next round tries again
            log.warning("cannot look for fan-outs to resume: %s", exc)
        except Exception:
            log.exception("looking for fan-outs to resume failed; it runs again next round")

    async def job() -> None:
        task = asyncio.create_task(resume(), name="resume-fanouts")
        running.add(task)
        task.add_done_callback(running.discard)

    return job


Job = tuple[str, float, Callable[[], Awaitable[object]]]


@asynccontextmanager
async def run_scheduler(
    store: Store,
    broadcaster: Broadcaster,
    feeds: tuple[FeedSettings, ...],
    extra: Sequence[Job] = (),
    *,
    resume_every: float = RESUME_SECONDS,
) -> AsyncIterator[None]:
    """Start the periodic jobs (plus `extra` ones: name, seconds, job) for the duration of the block."""

    async def housekeeping() -> None:
        await broadcaster.expire_due()

    resuming: set[asyncio.Task[None]] = set()
    scheduler = AsyncIOScheduler(timezone=UTC)
    now = datetime.now(UTC)
    scheduler.add_job(
        resumer(broadcaster, resuming),
        "interval",
        seconds=resume_every,
        next_run_time=now,
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(
        locked(store, "housekeeping", HOUSEKEEPING_SECONDS * 2, housekeeping),
        "interval",
        seconds=HOUSEKEEPING_SECONDS,
        next_run_time=now,
        max_instances=1,
        coalesce=True,
    )
    for name, seconds, job in extra:
        scheduler.add_job(
            locked(store, name, max(seconds * 4, 10.0), job),
            "interval",
            seconds=seconds,
            next_run_time=now,
            max_instances=1,
            coalesce=True,
        )
    poller = feed_poller(store, broadcaster)
    for feed in feeds:
        # The lock outlives a slow poll's timeouts, so two schedulers never poll one feed at once.
        ttl = max(feed.interval, feed.timeout * 10)
        scheduler.add_job(
            locked(store, f"feed:{feed.name}", ttl, _poll_job(poller, feed)),
            "interval",
            seconds=feed.interval,
            next_run_time=now,
            max_instances=1,
            coalesce=True,
        )
    scheduler.start()
    try:
        yield
    finally:
        scheduler.shutdown(wait=False)
        # A resume cut short frees its lease on the way out: another process carries on at once.
        for task in list(resuming):
            task.cancel()
        await asyncio.gather(*resuming, return_exceptions=True)
