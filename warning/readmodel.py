"""The read side of the alert service: its stores and the questions views ask, without rendering or sending.

`Broadcaster` (broadcast.py) is this plus issuing, cancelling and CAP; `warning status`, run again and
again through the night, builds only this, so it loads no template engine, CAP parser or provider client.
"""

from __future__ import annotations

from collections.abc import Sequence

from warning.alerts import AlertStore
from warning.audiences import catalogue
from warning.config import Settings
from warning.deliveries import ChannelCounts, Deliveries
from warning.directory.store import Directory
from warning.escalation import Escalation
from warning.fanout import ALL_CLEAR_ACTION, Texts
from warning.links import Links
from warning.model import Alert
from warning.public_url import public_url_problem
from warning.reach import Reach
from warning.store import Store
from warning.tasks import Tasks


class ReadModel:
    """Alerts, deliveries, reach, tasks and the escalation ladder of one deployment."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.alerts = AlertStore(store.redis, store.keys, secret=settings.server.secret)
        self.directory = Directory(store)
        self.deliveries = Deliveries(store.redis, store.keys)
        self.texts = Texts(store.redis, store.keys)
        self.audiences = catalogue(settings.audiences)
        self.reach = Reach(store.redis, store.keys)
        self.links = Links(
            store.redis,
            store.keys,
            secret=settings.server.secret,
            base_url=settings.server.base_url,
            openable=public_url_problem(settings.server) is None,
        )
        self.tasks = Tasks(
            self.reach, self.directory, self.deliveries, self.links, settings.escalation, self.alerts
        )
        self.escalation = Escalation(
            alerts=self.alerts,
            reach=self.reach,
            directory=self.directory,
            deliveries=self.deliveries,
            tasks=self.tasks,
            settings=settings.escalation,
            clock=lambda: self.reach.clock(),
        )

    async def area_names(self, areas: Sequence[str]) -> dict[str, str]:
        """Area code → its name as people say it (village, township or county, by the code's length);
        an area with no village in the directory is left out."""
        names: dict[str, str] = {}
        for area in areas:
            villages = await self.directory.villages((await self.directory.village_codes([area]))[:1])
            if villages:
                v = villages[0]
                names[area] = v.name if len(area) == 12 else v.township if len(area) == 9 else v.county
        return names

    def channels(self, alert: Alert) -> list[str]:
        """The channels the alert's audiences use, in first-use order."""
        channels: list[str] = []
        for name in alert.audiences:
            audience = self.audiences.get(name)
            for channel in audience.channels if audience else ():
                if channel not in channels:
                    channels.append(channel)
        return channels

    async def status(self, alert_id: str) -> tuple[Alert, dict[str, ChannelCounts]]:
        """The alert and its delivery counts per channel, then (once cancelled) the all-clear per channel
        (`sms.clear` …) and loudspeakers' `speaker.stop`; ledgers with nothing in them are left out.

        Raises:
            AlertError: unknown id.
        """
        alert = await self.alerts.get(alert_id)
        channels = self.channels(alert)
        ledgers = [*channels, *(f"{c}.{ALL_CLEAR_ACTION}" for c in channels)]
        if "speaker" in channels:
            ledgers.append("speaker.stop")
        counts = await self.deliveries.counts(alert.id, alert.version, ledgers)
        return alert, {k: v for k, v in counts.items() if k in channels or v.counts}


def counts_json(counts: dict[str, ChannelCounts]) -> dict[str, dict[str, int]]:
    """Delivery counts as JSON: ledger → state → count, ledgers without deliveries left out."""
    return {channel: dict(c.counts) for channel, c in counts.items() if c.counts}
