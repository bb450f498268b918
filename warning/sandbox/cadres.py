"""Simulated village cadres for drills: they open their signed task link and confirm residents over HTTP,
some promptly, some late, some never — and officials an escalation reaches do the same for the
residents escalated to them. Deterministic for a seed; the drill's clock is scaled (`minute` seconds
of real time stand for one minute of the night).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field

import aiohttp

from warning.evidence import Evidence
from warning.model import Alert

log = logging.getLogger(__name__)

# (share of contacts, first confirmation after … minutes, last after … minutes); the rest never answer.
PROMPT = (0.65, 3.0, 12.0)
LATE = (0.2, 16.0, 28.0)
OUTCOME_WEIGHTS = {"reached": 55, "evacuated": 35, "not_home": 5, "refused": 3, "needs_help": 2}


@dataclass
class CadreSimulator:
    evidence: Evidence
    alert: Alert
    minute: float  # real seconds per simulated minute
    seed: int = 11
    escalated_answer_rate: float = 0.5  # officials reached by an escalation who then confirm
    confirmed: int = 0
    refused: int = 0  # confirmations the service refused (must stay 0)
    silent: list[str] = field(default_factory=list)  # contacts who never answered
    _started: set[str] = field(default_factory=set)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        """Give every contact with a list (now or after an escalation) their behaviour, until `stop`."""
        rng = random.Random(self.seed)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while not stop.is_set():
                contacts = [t.contact_id for t in await self.evidence.service.tasks.lists(self.alert)]
                contacts += [e.contact_id for e in await self.evidence.service.escalation.log(self.alert.id)]
                for contact in dict.fromkeys(c for c in contacts if c and c not in self._started):
                    self._started.add(contact)
                    escalated = not await self.evidence.reach.task_residents(self.alert.id, contact)
                    delays = self._behaviour(rng, escalated)
                    if delays is None:
                        self.silent.append(contact)
                        continue
                    task = asyncio.create_task(
                        self._contact(session, contact, delays, random.Random(rng.random()))
                    )
                    self._tasks.append(task)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _behaviour(self, rng: random.Random, escalated: bool) -> tuple[float, float] | None:
        if escalated:
            return (2.0, 6.0) if rng.random() < self.escalated_answer_rate else None
        draw = rng.random()
        if draw < PROMPT[0]:
            return PROMPT[1], PROMPT[2]
        if draw < PROMPT[0] + LATE[0]:
            return LATE[1], LATE[2]
        return None

    async def _contact(
        self, session: aiohttp.ClientSession, contact: str, delays: tuple[float, float], rng: random.Random
    ) -> None:
        url = await self.evidence.service.tasks.link(self.alert, contact)
        start = asyncio.get_running_loop().time()
        await asyncio.sleep(delays[0] * self.minute)
        async with session.get(url) as page:  # the cadre opens the list first, as a person would
            await page.read()
        residents = await self.evidence.residents_of(self.alert.id, contact)
        rng.shuffle(residents)
        span = max(0.0, (delays[1] - delays[0]) * self.minute)
        for index, resident in enumerate(residents):
            entry = await self.evidence.reach.entry(self.alert.id, resident)
            if entry is not None and entry.done:
                continue
            due = start + delays[0] * self.minute + span * (index + 1) / len(residents)
            await asyncio.sleep(max(0.0, due - asyncio.get_running_loop().time()))
            outcome = rng.choices(list(OUTCOME_WEIGHTS), weights=list(OUTCOME_WEIGHTS.values()))[0]
            form = {"resident_id": resident, "outcome": outcome, "alert_id": self.alert.id}
            async with session.post(f"{url}/confirm", data=form, headers={"Accept": "application/json"}) as r:
                await r.read()
                if r.status == 200:
                    self.confirmed += 1
                else:
                    self.refused += 1
                    log.warning(
                        "simulated confirmation refused", extra={"status": r.status, "contact": contact}
                    )
