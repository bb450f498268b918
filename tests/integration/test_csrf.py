"""CSRF: a console form POST without the token, or with a wrong one, is 403 and changes nothing; with
the right one it works. The API with a session cookie needs X-CSRF-Token; with a bearer token it does not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.conftest import Servers
from tests.integration.console_service import Service, sign_in, start
from warning.store import Store
from warning.web.app import BROADCASTER


@pytest.fixture
async def service(store: Store, servers: Servers) -> AsyncIterator[Service]:
    async for running in start(store, servers):
        yield running


async def verified(service: Service) -> str:
    return (await service.app[BROADCASTER].alerts.audit_log_store.last_verification()).get("at", "")


async def test_form_post_needs_the_right_token(service: Service) -> None:
    """POST /console/audit/verify: no token 403, wrong token 403 (nothing verified), right token 303."""
    client, csrf = await sign_in(service.base, "u-admin")
    url = f"{service.base}/console/audit/verify"
    async with client:
        for form in ({}, {"csrf": "wrong" + csrf[5:]}):
            async with client.post(url, data=form, allow_redirects=False) as answer:
                assert answer.status == 403
                assert "CSRF" in await answer.text()
        assert await verified(service) == ""
        async with client.post(url, data={"csrf": csrf}, allow_redirects=False) as answer:
            assert answer.status == 303
        assert await verified(service) != ""


async def test_api_with_a_session_needs_the_header_and_bearer_does_not(service: Service) -> None:
    """A session-authenticated API POST without X-CSRF-Token is 403; with it, or with a bearer token
    and no cookie, the request reaches the handler (404 for an unknown alert)."""
    client, csrf = await sign_in(service.base, "u-operator")
    url = f"{service.base}/api/v1/alerts/no-such-alert/cancel"
    async with client:
        async with client.post(url, json={}, allow_redirects=False) as answer:
            assert answer.status == 403 and (await answer.json())["error"]["code"] == "forbidden"
        async with client.post(url, json={}, headers={"X-CSRF-Token": csrf}) as answer:
            assert answer.status == 404
    async with aiohttp.ClientSession() as bearer:
        headers = {"Authorization": f"Bearer {service.tokens['operator']}"}
        async with bearer.post(url, json={}, headers=headers) as answer:
            assert answer.status == 404
