"""The OpenAPI 3.1 document of every route the service serves (DESIGN §5.2), at `GET /api/v1/openapi.json`.

The document is public (the auth middleware lets OPENAPI_PATH through without a token). It is written
by hand beside the routes it describes; tests/integration/test_openapi.py fails when a route is added,
removed or re-templated without updating it, and checks real responses against its schemas.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from aiohttp import web

from warning.audiences import BUILTINS, DEFAULT_AUDIENCES
from warning.cap.document import Certainty, Urgency
from warning.model import AlertState, AlertStatus, Level, Role
from warning.reach import OUTCOMES, STATES
from warning.web.voice_hooks import CALL_STATUSES, VOICE_HOOKS

OPENAPI_PATH = "/api/v1/openapi.json"

# The JSON API's error codes (web/api.py) and the CAP message actions of a CAP POST (broadcast.CapOutcome).
ERROR_CODES = (
    "unauthorized",
    "forbidden",
    "invalid",
    "invalid_json",
    "invalid_body",
    "invalid_cap",
    "not_found",
    "conflict",
    "too_large",
    "unsupported_media_type",
)
CAP_ACTIONS = ("issued", "draft", "updated", "cancelled")
# Twilio's SMS `MessageStatus` values the status hook knows (web/hooks.py); any other is 400.
MESSAGE_STATUSES = ("queued", "accepted", "sending", "sent", "delivered", "undelivered", "failed")

Schema = dict[str, Any]

_STRING: Schema = {"type": "string"}
_INT: Schema = {"type": "integer", "minimum": 0}
_WHEN: Schema = {"type": "string", "format": "date-time"}
_AREA: Schema = {
    "type": "string",
    "pattern": r"^\d{6}(\d{3}){0,2}$",
    "description": "统计用区划代码: 6 digits (county), 9 (township) or 12 (village); matched by prefix.",
    "examples": ["331099101"],
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: Schema, required: tuple[str, ...] = (), **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = list(required)
    return schema


def _counts(*names: str) -> Schema:
    return _obj(dict.fromkeys(names, _INT), names)


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _text(media: str, description: str) -> Schema:
    return {"description": description, "content": {media: {"schema": _STRING}}}


def _error(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


def _param(name: str, where: str, schema: Schema, description: str, *, required: bool = False) -> Schema:
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "schema": schema,
        "description": description,
    }


def _form(schema: Schema) -> Schema:
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": schema}}}


_ALERT_ID = _param("id", "path", _STRING, "The alert id (its CAP identifier).")
_TOKEN = _param("token", "path", _STRING, "The signed link token: one purpose, one alert, one person.")
_LANG = _param("lang", "query", {"type": "string", "enum": ["en"]}, "`en` for English; zh-CN otherwise.")
_PUBLIC: list[Schema] = []
_BEARER: list[Schema] = [{"bearerAuth": []}]


def _schemas() -> dict[str, Schema]:
    reach_counts = _counts("total", *STATES.values())
    return {
        "Error": _obj(
            {
                "error": _obj(
                    {
                        "code": {"type": "string", "enum": list(ERROR_CODES)},
                        "message": {"type": "string", "description": "zh-CN or English, per the server."},
                        "field": {"type": "string", "description": "The offending field or CAP element."},
                    },
                    ("code", "message"),
                )
            },
            ("error",),
        ),
        "Level": {
            "type": "string",
            "enum": [level.value for level in Level],
            "description": "Colour level ↔ CAP severity: blue Minor, yellow Moderate, orange Severe, red Extreme.",
        },
        "AlertCreate": _obj(
            {
                "event": {"type": "string", "minLength": 1, "examples": ["台风"]},
                "level": {
                    "type": "string",
                    "enum": [
                        *(level.value for level in Level),
                        *("红色", "橙色", "黄色", "蓝色", "红", "橙", "黄", "蓝"),
                    ],
                    "description": "A colour level, in English (any case) or Chinese.",
                },
                "areas": {
                    "oneOf": [
                        {"type": "array", "items": _AREA, "minItems": 1},
                        {"type": "string", "description": "Area codes separated by commas."},
                    ]
                },
                "headline": _STRING,
                "description": _STRING,
                "instruction": _STRING,
                "expires": {"type": ["string", "null"], "format": "date-time"},
                "exercise": {"type": "boolean", "default": False, "description": "A drill (CAP Exercise)."},
                "audiences": {
                    "type": "array",
                    "items": _STRING,
                    "default": list(DEFAULT_AUDIENCES),
                    "description": "Built-in audiences: "
                    + ", ".join(BUILTINS)
                    + "; the bureau's config may define more.",
                },
                "event_code": {"type": "string", "examples": ["11B01"]},
                "id": {"type": "string", "description": "An id of your own; re-issuing it changes nothing."},
            },
            ("event", "level", "areas"),
            additionalProperties=False,
            description="Unknown fields are refused with 400 naming the field.",
        ),
        "Alert": _obj(
            {
                "id": _STRING,
                "sender": _STRING,
                "sent": _WHEN,
                "event": _STRING,
                "level": _ref("Level"),
                "areas": {"type": "array", "items": _AREA},
                "headline": _STRING,
                "description": _STRING,
                "instruction": _STRING,
                "event_code": _STRING,
                "status": {"type": "string", "enum": [s.value for s in AlertStatus]},
                "msg_type": {"type": "string", "enum": ["Alert", "Update", "Cancel"]},
                "references": {"type": "array", "items": _STRING},
                "urgency": {"type": "string", "enum": [u.value for u in Urgency]},
                "certainty": {"type": "string", "enum": [c.value for c in Certainty]},
                "effective": _WHEN,
                "onset": _WHEN,
                "expires": _WHEN,
                "audiences": {"type": "array", "items": _STRING},
                "languages": {"type": "array", "items": _STRING},
                "state": {"type": "string", "enum": [s.value for s in AlertState]},
                "version": {"type": "integer", "minimum": 1},
                "exercise": {"type": "boolean"},
            },
            ("id", "sender", "sent", "event", "level", "status", "msg_type", "state", "version", "exercise"),
            description="An alert, aligned with CAP 1.2. Empty optional fields are left out.",
        ),
        "AlertWithDeliveries": {
            "allOf": [
                _ref("Alert"),
                _obj(
                    {
                        "deliveries": {
                            "type": "object",
                            "additionalProperties": _obj({}, additionalProperties=_INT),
                        }
                    },
                    ("deliveries",),
                    description="Deliveries of the current version per channel ledger: state → count.",
                ),
            ]
        },
        "CapIngested": {
            "allOf": [
                _ref("Alert"),
                _obj({"cap_action": {"type": "string", "enum": list(CAP_ACTIONS)}}, ("cap_action",)),
            ]
        },
        "AlertList": _obj({"alerts": {"type": "array", "items": _ref("Alert")}}, ("alerts",)),
        "ReachCounts": reach_counts,
        "Responsible": _obj(
            {
                "contact_id": _STRING,
                "role": {
                    "type": "string",
                    "description": "One of " + ", ".join(Role) + "; empty if unknown.",
                },
            },
            ("contact_id", "role"),
        ),
        "ReachView": _obj(
            {
                "alert_id": _STRING,
                "version": {"type": "integer", "minimum": 1},
                "state": {"type": "string", "enum": [s.value for s in AlertState]},
                "must_reach": {
                    "allOf": [
                        _ref("ReachCounts"),
                        _obj(
                            {"escalated": _INT, "late": _INT, "outcomes": _counts(*OUTCOMES)},
                            ("escalated", "late", "outcomes"),
                        ),
                    ]
                },
                "residents": _ref("ReachCounts"),
                "audiences": {"type": "object", "additionalProperties": _ref("ReachCounts")},
                "villages": {
                    "type": "array",
                    "items": _obj(
                        {
                            "code": _AREA,
                            "name": _STRING,
                            "must_reach_total": _INT,
                            "confirmed": _INT,
                            "acknowledged": _INT,
                            "notified": _INT,
                            "pending": _INT,
                            "residents": _ref("ReachCounts"),
                            "speakers": _counts("total", "online", "played", "failed"),
                            "heard_at": {"type": ["string", "null"], "format": "date-time"},
                            "responsible": {"oneOf": [_ref("Responsible"), {"type": "null"}]},
                        },
                        ("code", "name", "must_reach_total", "confirmed", "speakers"),
                    ),
                },
                "unreached": {
                    "type": "array",
                    "items": _obj(
                        {
                            "resident_id": _STRING,
                            "name": _STRING,
                            "village": _STRING,
                            "village_name": _STRING,
                            "state": {"type": "string", "enum": list(STATES.values())},
                            "escalated": {"type": "boolean"},
                            "responsible": {
                                "allOf": [_ref("Responsible"), _obj({"name": _STRING}, ("name",))]
                            },
                        },
                        ("resident_id", "village", "state", "responsible"),
                    ),
                    "description": "The first `limit` open must-reach residents; the counts are complete.",
                },
                "unreached_total": _INT,
                "channels": {
                    "type": "object",
                    "additionalProperties": {
                        "allOf": [
                            _counts("queued", "sent", "delivered", "failed"),
                            {"additionalProperties": _INT},
                        ]
                    },
                    "description": "Per ledger (`sms`, `voice.task`, `speaker.esc0`, …): state → count.",
                },
                "milestones": {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "null"], "format": "date-time"},
                },
                "escalations": {
                    "type": "array",
                    "items": _obj(
                        {
                            "step": _STRING,
                            "role": _STRING,
                            "contact": _STRING,
                            "name": _STRING,
                            "villages": {"type": "array", "items": _STRING},
                            "residents": _INT,
                            "at": {"type": "number", "description": "Unix time."},
                            "detail": _STRING,
                        },
                        ("step", "role", "contact", "villages", "residents", "at"),
                    ),
                },
            },
            ("alert_id", "must_reach", "villages", "unreached", "channels"),
        ),
        "TaskLists": _obj(
            {
                "alert_id": _STRING,
                "tasks": {
                    "type": "array",
                    "items": _obj(
                        {
                            "contact_id": _STRING,
                            "name": _STRING,
                            "role": _STRING,
                            "link": {
                                "type": "string",
                                "description": "The signed cadre page URL. Only for roles that may issue"
                                " (operator, approver, admin): whoever holds it can confirm residents,"
                                " so a viewer's list has no `link`.",
                            },
                            "total": _INT,
                            "confirmed": _INT,
                            "deadline": {"type": "number", "description": "Unix time to report by."},
                        },
                        ("contact_id", "name", "role", "total", "confirmed", "deadline"),
                    ),
                },
            },
            ("alert_id", "tasks"),
        ),
        "CadreConfirm": _obj(
            {
                "resident_id": _STRING,
                "outcome": {"type": "string", "enum": list(OUTCOMES)},
                "note": {"type": "string", "maxLength": 200},
                "alert_id": {
                    "type": "string",
                    "description": "If sent, must be the token's alert (else 403).",
                },
            },
            ("resident_id", "outcome"),
        ),
        "Readiness": _obj(
            {
                "status": {"type": "string", "enum": ["ready", "degraded", "not_ready"]},
                "checks": {
                    "type": "object",
                    "additionalProperties": _obj(
                        {
                            "ok": {"type": "boolean"},
                            "ms": {"type": "number"},
                            "error": _STRING,
                            "url": _STRING,
                            "persistence": _STRING,
                        },
                        ("ok",),
                    ),
                    "description": "`redis`, `mqtt` and `channel:NAME` per running channel.",
                },
            },
            ("status", "checks"),
        ),
    }


def _responses() -> dict[str, Schema]:
    error = _ref("Error")
    return {
        name: _json(error, text)
        for name, text in (
            (
                "Invalid",
                "Invalid request: `invalid`, `invalid_json`, `invalid_body` (not UTF-8) or `invalid_cap`,"
                " naming the field.",
            ),
            ("Unauthorized", "Missing or invalid bearer token."),
            ("Forbidden", "The token's role may not do this."),
            ("NotFound", "No such alert."),
            ("Conflict", "The alert's state does not allow this."),
            ("TooLarge", "The body is over 1 MiB."),
            ("UnsupportedMediaType", "The body's Content-Type is not one this route reads."),
        )
    }


def _api(summary: str, description: str, ok: dict[str, Schema], *errors: str, **extra: Any) -> dict[str, Any]:
    responses = dict(ok)
    for name, code in (
        ("Invalid", "400"),
        ("Unauthorized", "401"),
        ("Forbidden", "403"),
        ("NotFound", "404"),
        ("Conflict", "409"),
        ("TooLarge", "413"),
        ("UnsupportedMediaType", "415"),
    ):
        if name in errors:
            responses[code] = _error(name)
    return {
        "summary": summary,
        "description": description,
        "security": _BEARER,
        "responses": responses,
        **extra,
    }


def _twilio(
    summary: str, description: str, form: Schema, ok: dict[str, Schema], *query: Schema
) -> dict[str, Any]:
    """A Twilio webhook: signed over our public URL and every form parameter; replays answered, not rerun."""
    return {
        "summary": summary,
        "description": description
        + "\n\nAuthenticated by Twilio's signature, not a token: `X-Twilio-Signature` must be the"
        " HMAC-SHA1 of the public URL (`server.public_url` + path + query) and the sorted form"
        " parameters under the account's auth token; otherwise 403 and nothing changes. A repeated"
        " `I-Twilio-Idempotency-Token` is a replay: answered, but counted once.",
        "security": _PUBLIC,
        "tags": ["webhooks"],
        "parameters": [
            _param("X-Twilio-Signature", "header", _STRING, "Twilio's request signature.", required=True),
            _param("I-Twilio-Idempotency-Token", "header", _STRING, "Twilio's retry id (replay guard)."),
            *query,
        ],
        "requestBody": _form(
            _obj(
                form,
                additionalProperties=_STRING,
                description="Twilio sends more parameters than these; the signature covers every one.",
            )
        ),
        "responses": ok | {"403": _text("text/plain", "Invalid signature; nothing changed.")},
    }


def _paths() -> dict[str, Any]:
    alert_json = {"201": _json(_ref("Alert"), "Issued: validated, rendered and saved; fan-out runs after.")}
    cap_xml = {"schema": {"type": "string", "description": "A CAP 1.2 <alert> document."}}
    delivery = _param("d", "query", _STRING, "The delivery key `{alert}:{version}:{channel}:{recipient}`.")
    delivery["required"] = True
    twiml = {"200": _text("text/xml", "TwiML for the call.")}
    wechat_query = [
        _param(
            "signature", "query", _STRING, "sha1 of the sorted token, timestamp and nonce.", required=True
        ),
        _param("timestamp", "query", _STRING, "Unix seconds; stale ones are refused.", required=True),
        _param(
            "nonce", "query", _STRING, "A replayed (timestamp, nonce) is answered but ignored.", required=True
        ),
    ]
    wechat_auth = (
        "\n\nAuthenticated by WeChat's signature, not a token: `signature` must be the sha1 of the"
        " Official Account token, `timestamp` and `nonce`, sorted and joined, and `timestamp` fresh;"
        " otherwise 403 and nothing changes."
    )
    html = {"content": {"text/html": {"schema": _STRING}}}
    page_errors = {
        "403": {"description": "Forged or foreign token, or a resident not on the list (audited)."} | html,
        "410": {"description": "The link expired or the alert ended."} | html,
    }
    return {
        "/api/v1/alerts/preview": {
            "post": _api(
                "预览预警 Preview an alert",
                "The same JSON body as issuing; answers what issuing would send — per audience × channel"
                " the recipients, those without an address, and each language's text with SMS segments —"
                " and saves and queues nothing. A missing headline or instruction is a 400"
                " `missing_field`. Needs the `issue` permission.",
                {"200": _json({"type": "object"}, "What issuing would send.")},
                "Invalid",
                "Unauthorized",
                "Forbidden",
                "TooLarge",
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("AlertCreate")}},
                },
            ),
        },
        "/api/v1/alerts": {
            "post": _api(
                "签发预警 Issue an alert",
                "A JSON body, or a CAP 1.2 XML document (`application/cap+xml`, `application/xml`,"
                " `text/xml`). CAP answers 201 when it issued or drafted an alert, 200 when it updated or"
                " cancelled one, with `cap_action` saying which. Needs the `issue` permission.",
                alert_json | {"200": _json(_ref("CapIngested"), "A CAP Update or Cancel was applied.")},
                "Invalid",
                "Unauthorized",
                "Forbidden",
                "NotFound",
                "Conflict",
                "TooLarge",
                "UnsupportedMediaType",
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref("AlertCreate")},
                        "application/cap+xml": cap_xml,
                        "application/xml": cap_xml,
                        "text/xml": cap_xml,
                    },
                },
            ),
            "get": _api(
                "预警列表 List recent alerts",
                "Newest first. Needs `read`.",
                {"200": _json(_ref("AlertList"), "Recent alerts.")},
                "Unauthorized",
                "Forbidden",
                parameters=[_param("limit", "query", {"type": "integer", "default": 50}, "How many.")],
            ),
        },
        "/api/v1/alerts/{id}": {
            "get": _api(
                "预警状态 Read an alert",
                "The alert and its delivery counts. Needs `read`.",
                {"200": _json(_ref("AlertWithDeliveries"), "The alert.")},
                "Unauthorized",
                "Forbidden",
                "NotFound",
                parameters=[_ALERT_ID],
            ),
        },
        **{
            f"/api/v1/alerts/{{id}}/{action}": {
                "post": _api(
                    summary,
                    description,
                    {"200": _json(_ref("Alert"), "The alert as it is now.")},
                    "Unauthorized",
                    "Forbidden",
                    "NotFound",
                    "Conflict",
                    parameters=[_ALERT_ID],
                )
            }
            for action, summary, description in (
                (
                    "cancel",
                    "撤销预警 Cancel an alert",
                    "Stops what is still pending and sends the all-clear (解除) to everyone who was sent the"
                    " alert, on the channels they got it on; loudspeakers play it. Optional JSON body"
                    ' `{"silent": true}` cancels without the all-clear, `{"note": "…"}` (≤ 500 characters)'
                    " adds what to do now. The response adds `all_clear`: messages queued per channel."
                    " Needs `cancel`.",
                ),
                (
                    "approve",
                    "批准预警 Approve a draft",
                    "Issues a draft; the approver may not be the operator who drafted it. Needs `approve`.",
                ),
                ("reject", "驳回预警 Reject a draft", "The draft is never issued. Needs `approve`."),
            )
        },
        "/api/v1/alerts/{id}/events": {
            "get": _api(
                "实时进度 Progress events",
                "Server-sent events: `progress` every second (deliveries per ledger and state, must-reach"
                " counts, unreached total) while the alert is issued, then one `end`. Needs `read`.",
                {
                    "200": {
                        "description": "An event stream (`event: progress|end`, `data:` one JSON object).",
                        "content": {"text/event-stream": {"schema": _STRING}},
                    }
                },
                "Unauthorized",
                "Forbidden",
                "NotFound",
                parameters=[_ALERT_ID],
            ),
        },
        "/api/v1/alerts/{id}/update": {
            "post": _api(
                "更新预警 Update an alert",
                "A new version of an issued alert (same body as issuing one). Needs `issue`.",
                {"200": _json(_ref("Alert"), "The new version.")},
                "Invalid",
                "Unauthorized",
                "Forbidden",
                "NotFound",
                "Conflict",
                "TooLarge",
                "UnsupportedMediaType",
                parameters=[_ALERT_ID],
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("AlertCreate")}},
                },
            ),
        },
        "/api/v1/alerts/{id}/reach": {
            "get": _api(
                "叫应情况 Reach of an alert",
                "Per village and audience, and the unreached must-reach residents with who answers for"
                " them. Needs `read`.",
                {
                    "200": {
                        "description": "The reach view, or CSV with `format=csv`.",
                        "content": {
                            "application/json": {"schema": _ref("ReachView")},
                            "text/csv": {"schema": _STRING},
                        },
                    }
                },
                "Invalid",
                "Unauthorized",
                "Forbidden",
                "NotFound",
                parameters=[
                    _ALERT_ID,
                    _param(
                        "limit",
                        "query",
                        {"type": "integer", "minimum": 1, "maximum": 100_000, "default": 1000},
                        "At most this many unreached residents are listed.",
                    ),
                    _param("format", "query", {"type": "string", "enum": ["json", "csv"]}, "csv for a file."),
                ],
            ),
        },
        "/api/v1/alerts/{id}/tasks": {
            "get": _api(
                "叫应任务 Cadres' task lists",
                "Per contact how many residents and how many confirmed. Needs `read`; the signed page"
                " `link` is included only for roles that may issue (operators and up).",
                {"200": _json(_ref("TaskLists"), "The task lists.")},
                "Unauthorized",
                "Forbidden",
                "NotFound",
                parameters=[_ALERT_ID],
            ),
        },
        "/api/v1/alerts/{id}/cap": {
            "get": {
                "summary": "CAP 文档 The alert as CAP 1.2",
                "description": "Public for issued, non-exercise alerts (the Atom feed links here);"
                " any alert with a bearer token. Without a token, an unknown id and a non-public alert"
                " both answer 401, so ids cannot be probed.",
                "security": [{}, *_BEARER],
                "parameters": [_ALERT_ID],
                "responses": {
                    "200": {"description": "CAP 1.2 XML.", "content": {"application/cap+xml": cap_xml}},
                    "401": _error("Unauthorized"),
                    "404": _error("NotFound"),
                },
            },
        },
        OPENAPI_PATH: {
            "get": {
                "summary": "本文档 This document",
                "description": "Public: no token needed.",
                "security": _PUBLIC,
                "responses": {"200": _json({"type": "object"}, "The OpenAPI 3.1 document.")},
            },
        },
        "/feeds/alerts.atom": {
            "get": {
                "summary": "预警订阅 Atom feed",
                "description": "Public CAP index of issued, non-exercise alerts, each linking its CAP document.",
                "security": _PUBLIC,
                "responses": {"200": _text("application/atom+xml", "An Atom 1.0 feed.")},
            },
        },
        "/hooks/twilio/status": {
            "post": _twilio(
                "短信回执 SMS status callback",
                "A delivery receipt for the delivery `d`.",
                {"MessageSid": _STRING, "MessageStatus": {"type": "string", "enum": list(MESSAGE_STATUSES)}},
                {
                    "204": {"description": "Recorded (or a replay)."},
                    "400": _text("text/plain", "Unknown status or delivery."),
                },
                delivery,
            ),
        },
        "/hooks/twilio/sms": {
            "post": _twilio(
                "短信回复 Inbound SMS",
                "A resident's reply: any reply shows they got the warning.",
                {
                    "From": {"type": "string", "examples": ["+8613800000000"]},
                    "Body": _STRING,
                    "MessageSid": _STRING,
                },
                {"200": _text("text/xml", "Empty TwiML.")},
            ),
        },
        f"{VOICE_HOOKS}/twiml": {
            "post": _twilio(
                "语音内容 Voice call TwiML",
                "What an answered call says: the warning, repeated, asking to press 1.",
                {"CallSid": _STRING},
                twiml | {"400": _text("text/plain", "Unknown delivery.")},
                delivery,
            ),
        },
        f"{VOICE_HOOKS}/gather": {
            "post": _twilio(
                "语音按键 Keypress",
                "The key pressed: 1 acknowledges; anything else is asked again once (`r=1`).",
                {"CallSid": _STRING, "Digits": _STRING},
                twiml | {"400": _text("text/plain", "Unknown delivery.")},
                delivery,
                _param("r", "query", {"type": "string", "enum": ["1"]}, "Set on the second asking."),
            ),
        },
        f"{VOICE_HOOKS}/status": {
            "post": _twilio(
                "通话状态 Call status",
                "Call progress: reported once per callback.",
                {"CallSid": _STRING, "CallStatus": {"type": "string", "enum": sorted(CALL_STATUSES)}},
                {
                    "204": {"description": "Recorded (or a replay)."},
                    "400": _text("text/plain", "Unknown delivery, attempt or call status."),
                },
                delivery,
                _param("n", "query", {"type": "integer", "minimum": 1}, "The call attempt.", required=True),
            ),
        },
        "/hooks/wechat": {
            "get": {
                "summary": "微信接入验证 WeChat URL check",
                "description": "The Official Account backend checks the URL; `echostr` is echoed."
                + wechat_auth,
                "security": _PUBLIC,
                "tags": ["webhooks"],
                "parameters": [*wechat_query, _param("echostr", "query", _STRING, "Echoed back.")],
                "responses": {
                    "200": _text("text/plain", "The echostr."),
                    "403": _text("text/plain", "Invalid signature."),
                },
            },
            "post": {
                "summary": "微信事件 WeChat event",
                "description": "TEMPLATESENDJOBFINISH says whether a template message reached the user."
                + wechat_auth,
                "security": _PUBLIC,
                "tags": ["webhooks"],
                "parameters": wechat_query,
                "requestBody": {
                    "required": True,
                    "content": {"text/xml": {"schema": {"type": "string", "maxLength": 65536}}},
                },
                "responses": {
                    "200": _text("text/plain", "`success`."),
                    "400": _error("Invalid"),
                    "403": _text("text/plain", "Invalid signature."),
                    "413": _text("text/plain", "Over 64 KiB."),
                },
            },
        },
        "/c/{token}": {
            "get": {
                "summary": "干部任务页 Cadre's task page",
                "description": "The cadre's must-reach residents for one alert, each with outcome buttons."
                " Authenticated by the signed link; nothing changes on GET.",
                "security": _PUBLIC,
                "tags": ["pages"],
                "parameters": [_TOKEN, _LANG],
                "responses": {"200": {"description": "The page."} | html} | page_errors,
            },
        },
        "/c/{token}/confirm": {
            "post": {
                "summary": "干部回报 Cadre confirms a resident",
                "description": "Records the outcome for one resident on the cadre's list. With"
                " `Accept: application/json` the answer is JSON instead of the page.",
                "security": _PUBLIC,
                "tags": ["pages"],
                "parameters": [_TOKEN, _LANG],
                "requestBody": _form(_ref("CadreConfirm")),
                "responses": {
                    "200": {
                        "description": "Recorded.",
                        "content": {
                            "text/html": {"schema": _STRING},
                            "application/json": {
                                "schema": _obj(
                                    {"resident_id": _STRING, "outcome": _STRING, "alert_id": _STRING},
                                    ("resident_id", "outcome", "alert_id"),
                                )
                            },
                        },
                    },
                    "400": {"description": "No valid outcome."} | html,
                }
                | page_errors,
            },
        },
        "/r/{token}": {
            "get": {
                "summary": "居民预警页 Resident's warning page",
                "description": "The warning with an “I got it” button. Authenticated by the signed link.",
                "security": _PUBLIC,
                "tags": ["pages"],
                "parameters": [_TOKEN, _LANG],
                "responses": {"200": {"description": "The page."} | html} | page_errors,
            },
        },
        "/r/{token}/ack": {
            "post": {
                "summary": "居民确认收到 Resident acknowledges",
                "description": "The resident says they got the warning. No form fields are needed.",
                "security": _PUBLIC,
                "tags": ["pages"],
                "parameters": [_TOKEN, _LANG],
                "responses": {"200": {"description": "Recorded."} | html} | page_errors,
            },
        },
        "/healthz": {
            "get": {
                "summary": "存活 Liveness",
                "description": "The process is alive and serving; no dependency is consulted.",
                "security": _PUBLIC,
                "tags": ["operations"],
                "responses": {
                    "200": _json(_obj({"status": {"const": "ok"}}, ("status",)), "Alive."),
                },
            },
        },
        "/readyz": {
            "get": {
                "summary": "就绪 Readiness",
                "description": "Redis and the MQTT broker decide readiness; a provider down is `degraded`.",
                "security": _PUBLIC,
                "tags": ["operations"],
                "responses": {
                    "200": _json(_ref("Readiness"), "Ready or degraded."),
                    "503": _json(_ref("Readiness"), "Redis or the broker does not answer."),
                },
            },
        },
        "/metrics": {
            "get": {
                "summary": "指标 Prometheus metrics",
                "description": "Prometheus text exposition format.",
                "security": _PUBLIC,
                "tags": ["operations"],
                "responses": {"200": _text("text/plain", "The metrics.")},
            },
        },
    }


def openapi_document(public_url: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document; `public_url`, when given, is the one server it names."""
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "warning",
            "version": "1",
            "summary": "多渠道预警发布与叫应 Multi-channel early-warning broadcast with per-person reach.",
            "description": 'Errors of the JSON API are `{"error": {"code", "message", "field"?}}`.'
            " Bodies over 1 MiB are refused with 413. Routes under /api/ need `Authorization: Bearer"
            " TOKEN` (`warning users add NAME --role ROLE` prints one), except this document and the"
            " CAP of a public alert. Webhooks are authenticated by their provider's signature, the"
            " cadre and resident pages by their signed link.",
        },
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token with a role: viewer (read), operator (issue, cancel),"
                    " approver (also approve), admin.",
                }
            },
        },
        "tags": [
            {"name": "webhooks", "description": "Provider callbacks, verified by signature."},
            {"name": "pages", "description": "Pages for people without an account, by signed link."},
            {"name": "operations", "description": "Probes and metrics."},
        ],
    }
    if public_url:
        document["servers"] = [{"url": public_url.rstrip("/")}]
    # The schemas share their small building blocks; a caller editing its copy must not edit them.
    return copy.deepcopy(document)


def openapi_routes(public_url: str = "") -> list[web.RouteDef]:
    """`GET /api/v1/openapi.json`: the document, built once."""
    body = json.dumps(openapi_document(public_url), ensure_ascii=False)

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/json", charset="utf-8")

    return [web.get(OPENAPI_PATH, openapi)]
