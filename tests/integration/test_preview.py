"""Preview and the no-empty-warning rule: service and API, on the sample county in real Redis."""

from __future__ import annotations

from dataclasses import replace

import aiohttp
import pytest

from tests.integration.test_api_reach import api  # noqa: F401  (the API fixture)
from warning.broadcast import AlertRequest, Broadcaster
from warning.config import Settings
from warning.errors import MissingField
from warning.model import Level
from warning.store import Store

TOWNSHIP = "331099101"
REQUEST = AlertRequest(
    event="台风",
    level=Level.ORANGE,
    areas=(TOWNSHIP,),
    headline="台风“海葵”今夜登陆",
    instruction="请低洼地区和危旧房群众立即转移到村委会避灾点",
)


def _service(store: Store) -> Broadcaster:
    base = Settings()
    return Broadcaster(
        store, replace(base, redis=replace(base.redis, namespace=store.keys.namespace, allow_volatile=True))
    )


@pytest.mark.parametrize("field", ["headline", "instruction"])
async def test_issue_refuses_a_blank_headline_or_instruction(sample_store: Store, field: str) -> None:
    """An Actual alert with a whitespace-only headline or instruction is refused, naming the field."""
    service = _service(sample_store)
    with pytest.raises(MissingField) as caught:
        await service.prepare(replace(REQUEST, **{field: "  "}))
    assert caught.value.field == field
    assert f"--{field}" in str(caught.value)
    assert await service.alerts.recent() == []


async def test_preview_counts_equal_what_issuing_queues(sample_store: Store) -> None:
    """The preview's recipients and no-address counts per channel are what the real fan-out then queues."""
    service = _service(sample_store)
    preview = await service.preview(REQUEST)
    assert await service.alerts.recent() == []
    assert preview.recipients > 0
    _, report = await service.issue(REQUEST)
    queued: dict[str, int] = {}
    missing: dict[str, int] = {}
    for row in preview.rows:
        queued[row.channel] = queued.get(row.channel, 0) + row.recipients
        missing[row.channel] = missing.get(row.channel, 0) + row.no_address
    assert {k: v for k, v in queued.items() if v} == {k: v for k, v in report.queued.items() if v}
    assert {k: v for k, v in missing.items() if v} == {k: v for k, v in report.no_address.items() if v}


async def test_preview_texts_carry_the_instruction_and_the_drill_mark(sample_store: Store) -> None:
    """Every previewed text of a drill is the rendered one: it says 【演练】 and the SMS has its segments."""
    preview = await _service(sample_store).preview(replace(REQUEST, exercise=True))
    sms = [r for r in preview.rows if r.channel == "sms"]
    assert sms and all(r.segments >= 1 and r.encoding == "UCS-2" for r in sms)
    zh = [t for r in preview.rows for t in r.texts if t.language == "zh-CN"]
    assert zh and all("演练" in t.text for t in zh)


BODY = {
    "event": "台风",
    "level": "orange",
    "areas": [TOWNSHIP],
    "headline": REQUEST.headline,
    "instruction": REQUEST.instruction,
}


async def test_api_preview_saves_nothing_and_refuses_a_missing_instruction(
    api: tuple[Broadcaster, str, dict[str, str]],  # noqa: F811
) -> None:
    """POST /alerts/preview returns rows with texts and counts and saves nothing; no instruction is a 400
    missing_field naming `instruction`, on preview and on issue alike; a viewer may not preview."""
    service, base, tokens = api
    headers = {"Authorization": f"Bearer {tokens['operator']}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(f"{base}/api/v1/alerts/preview", json=BODY) as r:
            assert r.status == 200
            document = await r.json()
        assert document["recipients"] > 0
        assert any(REQUEST.instruction in t["text"] for row in document["rows"] for t in row["texts"])
        assert await service.alerts.recent() == []
        for path in ("/api/v1/alerts/preview", "/api/v1/alerts"):
            async with session.post(f"{base}{path}", json=BODY | {"instruction": " "}) as r:
                assert r.status == 400
                error = (await r.json())["error"]
            assert error["code"] == "missing_field" and error["field"] == "instruction"
    viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
    async with (
        aiohttp.ClientSession(headers=viewer) as session,
        session.post(f"{base}/api/v1/alerts/preview", json=BODY) as r,
    ):
        assert r.status == 403
