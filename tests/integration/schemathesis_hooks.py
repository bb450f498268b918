"""Schemathesis hooks for tests/integration/test_schemathesis.py (loaded with SCHEMATHESIS_HOOKS).

The OpenAPI document says what a well-formed request is; some well-formed requests still depend on the
data the service holds (an area must contain villages of the directory, `expires` must be in the
future). For generated requests that schemathesis means to be *valid* (positive mode) these hooks put
in data the service holds — a village of the sample county, a future expiry, a drill — so valid
requests reach the handlers' real work (issue, update, cancel) instead of stopping at a 400. Negative
requests are never touched. Path `id`s are swapped for real alert ids half of the time.

Everything comes from the environment the test sets (WARNING_FUZZ_*); nothing here talks to Redis.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis
from schemathesis import Case, HookContext

from warning.audiences import BUILTINS
from warning.cap.emit import emit_cap
from warning.model import Alert, AlertStatus, Level

AREA = os.environ.get("WARNING_FUZZ_AREA", "331099101203")
ALERT_IDS = [i for i in os.environ.get("WARNING_FUZZ_ALERT_IDS", "").split(",") if i]
_XML = ("application/cap+xml", "application/xml", "text/xml")
_ALERT_BODIES = (
    "/api/v1/alerts",
    "/api/v1/alerts/preview",
    "/api/v1/alerts/estimate",
    "/api/v1/alerts/{id}/update",
)


def _pick(value: str, choices: list[str]) -> str | None:
    """A real value for half of the generated ones, chosen by the generated value (reproducible)."""
    if not choices:
        return None
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()
    return choices[digest[1] % len(choices)] if digest[0] % 2 == 0 else None


def _positive(case: Case[Any]) -> bool:
    """Generated to be valid in every part (a coverage case may be positive but for one component)."""
    meta = case.meta
    return (
        meta is not None
        and meta.generation.mode.is_positive
        and not any(part.mode.is_negative for part in meta.components.values())
    )


@schemathesis.serializer(*_XML)
def xml_as_text(context: Any, value: Any) -> bytes:
    """A CAP body is an XML document sent as it is (the document's schema is `string`): not wrapped in an
    element the way schemathesis serializes a JSON value to XML. Other generated values go as JSON text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value).encode()


@schemathesis.hook
def before_add_examples(context: HookContext, examples: list[Case[Any]]) -> None:
    for case in examples:
        _with_real_data(case)


@schemathesis.hook
def map_case(context: HookContext, case: Case[Any]) -> Case[Any]:
    return _with_real_data(case)


def _with_real_data(case: Case[Any]) -> Case[Any]:
    path = case.operation.path
    if case.path_parameters and "id" in case.path_parameters:
        real = _pick(str(case.path_parameters["id"]), ALERT_IDS)
        if real is not None:
            case.path_parameters["id"] = real
    if (
        path == "/api/v1/alerts"
        and case.media_type in _XML
        and isinstance(case.body, str)
        and _positive(case)
    ):
        # Any string is "valid" to the document, which cannot say "a CAP 1.2 alert": send a real one.
        case.body = _cap_drill(case.body)
    if (
        path in _ALERT_BODIES
        and case.method.upper() == "POST"
        and isinstance(case.body, dict)
        and _positive(case)
    ):
        body: dict[str, Any] = case.body
        if "areas" in body:
            body["areas"] = AREA if isinstance(body["areas"], str) else [AREA]
        if body.get("expires") is not None:
            body["expires"] = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
        if isinstance(body.get("audiences"), list):
            body["audiences"] = [a for a in body["audiences"] if a in BUILTINS] or ["vulnerable"]
        body["exercise"] = True  # a drill: nothing generated here is a real warning
    return case


def _cap_drill(seed: str) -> str:
    """A CAP 1.2 Exercise for the sample village, its identifier derived from the generated body."""
    now = datetime.now(UTC)
    identifier = "fuzz-" + hashlib.sha256(seed.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    alert = Alert(
        identifier,
        "fuzz@example.cn",
        now,
        "台风",
        Level.BLUE,
        (AREA,),
        headline="演练",
        instruction="演练，无需行动。",
        status=AlertStatus.EXERCISE,
        expires=now + timedelta(hours=2),
        event_code="11B01",
    )
    return emit_cap(alert, sender="fuzz@example.cn", sender_name="演练", villages=[]).decode()
