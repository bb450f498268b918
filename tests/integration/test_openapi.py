"""The OpenAPI document: valid OpenAPI 3.1, one operation per route the app serves (no more, no fewer),
served without a token, and the whole service's real answers match its schemas."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from tests.conftest import Servers, free_port, start_app
from warning.config import MqttSettings, Settings
from warning.model import Alert, AlertState, AlertStatus, Level
from warning.store import Store
from warning.users import Users
from warning.web.api import _ALERT_FIELDS, alert_json
from warning.web.app import STORE, build_app
from warning.web.hooks import _STATUS as _TWILIO_SMS_STATUS
from warning.web.openapi import OPENAPI_PATH, openapi_document
from warning.web.voice_hooks import CALL_STATUSES, VOICE_HOOKS

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
VILLAGE = "331099101203"


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


# The operator console's HTML pages (signed-in users, forms with CSRF) and its static assets are not the
# machine API the document describes; the link pages for cadres and residents are, and stay in it.
CONSOLE_MODULES = {
    "warning.web.console",
    "warning.web.console_live",
    "warning.web.console_fleet",
    "warning.web.login",
    "warning.web.audit_pages",
    "warning.web.public_page",
}


def served(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route but the console's; HEAD is aiohttp's automatic twin of each GET."""
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        and not isinstance(route.resource, web.StaticResource)
        and getattr(route.handler, "__module__", "") not in CONSOLE_MODULES
    }


def check(document: dict[str, Any], schema: str, instance: Any) -> None:
    """Validate `instance` against the document's component schema `schema` (refs resolved in the document)."""
    root = {"$ref": f"#/components/schemas/{schema}", "components": document["components"]}
    OAS31Validator(root, format_checker=oas31_format_checker).validate(instance)


def test_the_document_is_valid_openapi_3_1() -> None:
    """openapi-spec-validator accepts the document as OpenAPI 3.1, with and without a server URL."""
    validate(openapi_document(), cls=OpenAPIV31SpecValidator)
    validate(openapi_document("https://warn.example.cn/"), cls=OpenAPIV31SpecValidator)


def test_the_validator_would_notice_a_broken_document() -> None:
    """An optional path parameter or a malformed schema fails validation, so the test above can fail."""
    optional = openapi_document()
    optional["paths"]["/api/v1/alerts/{id}"]["get"]["parameters"][0]["required"] = False
    malformed = openapi_document()
    malformed["components"]["schemas"]["Alert"]["required"] = "id"
    for broken in (optional, malformed):
        with pytest.raises(OpenAPIValidationError):
            validate(broken, cls=OpenAPIV31SpecValidator)


def test_every_served_route_is_documented_and_nothing_else() -> None:
    """The app's router and the document list the same (method, path template) pairs."""
    app = build_app(Settings())
    routes, paths = served(app), documented(openapi_document())
    assert routes, "the app serves no routes?"
    assert not routes - paths, f"served but not in the OpenAPI document: {sorted(routes - paths)}"
    assert not paths - routes, f"in the OpenAPI document but not served: {sorted(paths - routes)}"


def test_api_routes_need_a_token_and_the_rest_do_not() -> None:
    """Every /api/ operation but the document and the public CAP declares bearer auth; nothing else does."""
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            security = operation["security"]
            if path == "/api/v1/alerts/{id}/cap":
                assert security == [{}, {"bearerAuth": []}]  # anonymous for public alerts, or a token
            elif path == OPENAPI_PATH or not path.startswith("/api/"):
                assert security == [], (method, path)
            else:
                assert security == [{"bearerAuth": []}], (method, path)


def test_the_create_body_lists_exactly_the_fields_the_api_accepts() -> None:
    """AlertCreate's properties are api._ALERT_FIELDS, closed to others; event, level, areas, and the headline
    and instruction every sent alert needs (preview.require_text), are required."""
    schema = openapi_document()["components"]["schemas"]["AlertCreate"]
    assert set(schema["properties"]) == _ALERT_FIELDS
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"event", "level", "areas", "headline", "instruction"}


def test_a_full_alert_matches_the_alert_schema() -> None:
    """alert_json of an alert with every field set validates, and every key it has is a documented property."""
    now = datetime.now(UTC)
    alert = Alert(
        "A-1",
        "warning@bureau.example",
        now,
        "台风",
        Level.RED,
        (VILLAGE,),
        headline="台风",
        description="d",
        instruction="i",
        event_code="11B01",
        status=AlertStatus.EXERCISE,
        msg_type="Update",
        references=("a,b,c",),
        effective=now,
        onset=now,
        expires=now + timedelta(hours=1),
        audiences=("vulnerable",),
        state=AlertState.ISSUED,
        version=2,
    )
    document = openapi_document()
    body = alert_json(alert)
    check(document, "Alert", body)
    assert set(body) <= set(document["components"]["schemas"]["Alert"]["properties"])


def test_webhook_enums_are_the_ones_the_hooks_accept() -> None:
    """MessageStatus is every status the SMS hook maps, CallStatus every one the voice hook takes."""
    paths = openapi_document()["paths"]

    def form(path: str) -> dict[str, Any]:
        body = paths[path]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
        properties: dict[str, Any] = body["schema"]["properties"]
        return properties

    assert set(form("/hooks/twilio/status")["MessageStatus"]["enum"]) == set(_TWILIO_SMS_STATUS)
    assert set(form(f"{VOICE_HOOKS}/status")["CallStatus"]["enum"]) == CALL_STATUSES


@pytest.fixture
async def service(sample_store: Store, servers: Servers) -> AsyncIterator[tuple[web.Application, str]]:
    """The whole service (no channel workers) on a loopback port, with the sample county."""
    port = free_port()
    base = Settings()
    settings = replace(
        base,
        server=replace(base.server, host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}"),
        redis=replace(
            base.redis, url=servers.redis_url, namespace=sample_store.keys.namespace, allow_volatile=True
        ),
        mqtt=MqttSettings(
            url=servers.mqtt_url or "", embedded_port=0, topic_prefix=f"t{uuid.uuid4().hex[:8]}"
        ),
    )
    app = build_app(settings, channels=[])
    runner = await start_app(app, port)
    try:
        yield app, settings.server.base_url
    finally:
        await runner.cleanup()


async def test_the_document_is_public_and_the_service_answers_as_it_says(
    service: tuple[web.Application, str],
) -> None:
    """GET /api/v1/openapi.json answers 200 JSON without a token; other /api/ routes still need one; real
    answers (alert, list, status, reach, tasks, errors, probes) validate against the documented schemas."""
    app, base_url = service
    async with aiohttp.ClientSession(base_url) as anonymous:
        async with anonymous.get(OPENAPI_PATH) as response:
            assert response.status == 200 and response.content_type == "application/json"
            document = await response.json()
        assert document == openapi_document(base_url)
        async with anonymous.get("/api/v1/alerts") as response:
            assert response.status == 401
            check(document, "Error", await response.json())
        async with anonymous.get(OPENAPI_PATH + "/") as response:
            assert response.status == 401  # only the exact path is public
        async with anonymous.get("/healthz") as response:
            assert response.status == 200
        async with anonymous.get("/readyz") as response:
            check(document, "Readiness", await response.json())

    token = await Users(app[STORE].redis, app[STORE].keys).add("值班员", "operator")
    body = {
        "event": "台风",
        "level": "yellow",  # below the two-person rule's level: issued at once (orange waits, see below)
        "areas": [VILLAGE],
        "headline": "台风将于今夜登陆",
        "instruction": "请低洼地区群众立即转移到村委会避灾点",
        "expires": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
        "audiences": ["vulnerable"],
    }
    async with aiohttp.ClientSession(base_url, headers={"Authorization": f"Bearer {token}"}) as session:
        check(document, "AlertCreate", body)
        async with session.post("/api/v1/alerts", json=body | {"severity": "x"}) as response:
            assert response.status == 400
            error = await response.json()
            check(document, "Error", error)
            assert error["error"]["field"] == "severity"
        async with session.post("/api/v1/alerts", json=body) as response:
            assert response.status == 201
            alert = await response.json()
            check(document, "Alert", alert)
        async with session.post("/api/v1/alerts", json=body | {"level": "orange"}) as response:
            assert response.status == 202  # documented: waiting for a second person's approval
            waiting = await response.json()
            check(document, "Alert", waiting)
            assert waiting["state"] == "pending_approval"
        async with session.get(f"/api/v1/alerts/{waiting['id']}/moves") as response:
            check(document, "Moves", await response.json())
        async with session.post("/api/v1/alerts/estimate", json=body) as response:
            check(document, "Estimate", await response.json())
        async with session.get("/api/v1/directory/villages?q=村") as response:
            check(document, "VillageTree", await response.json())
        async with session.get("/api/v1/alerts") as response:
            check(document, "AlertList", await response.json())
        deadline = time.monotonic() + 30
        while True:
            async with session.get(f"/api/v1/alerts/{alert['id']}/reach") as response:
                assert response.status == 200
                reach = await response.json()
            async with session.get(f"/api/v1/alerts/{alert['id']}/tasks") as response:
                tasks = await response.json()
            if reach["unreached"] and reach["villages"] and tasks["tasks"]:
                break
            assert time.monotonic() < deadline, (reach, tasks)
            await asyncio.sleep(0.1)
        check(document, "ReachView", reach)
        check(document, "TaskLists", tasks)
        async with session.get(f"/api/v1/alerts/{alert['id']}") as response:
            check(document, "AlertWithDeliveries", await response.json())
        async with session.get("/api/v1/alerts/nope") as response:
            assert response.status == 404
            check(document, "Error", await response.json())
