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
from warning.channels.registry import REGISTRY
from warning.model import AlertState, AlertStatus, Level, Role
from warning.reach import OUTCOMES, STATES
from warning.web.access import public
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
    "missing_field",
    "unknown_field",
    "invalid_field",
    "not_found",
    "conflict",
    "too_large",
    "unsupported_media_type",
)
CAP_ACTIONS = ("issued", "pending_approval", "draft", "updated", "cancelled")
# An alert's moves (approval.Move): who did what to it.
MOVE_ACTIONS = (
    "draft",
    "submit",
    "return",
    "revise",
    "approve",
    "reject",
    "issue",
    "propose_update",
    "update",
    "cancel",
)
# Twilio's SMS `MessageStatus` values the status hook knows (web/hooks.py); any other is 400.
MESSAGE_STATUSES = ("queued", "accepted", "sending", "sent", "delivered", "undelivered", "failed")

Schema = dict[str, Any]

_STRING: Schema = {"type": "string"}
# Text every sent alert must carry: blank (only whitespace) counts as missing (preview.require_text).
# Not blank as the server judges it (Python's str.strip, which also strips \x1c-\x1f and \x85).
NOT_BLANK = r"[^\s\x1c-\x1f\x85]"
_TEXT: Schema = {"type": "string", "minLength": 1, "pattern": NOT_BLANK}
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
                "event": _TEXT | {"examples": ["台风"]},
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
                "headline": _TEXT | {"examples": ["台风将于今夜登陆"]},
                "description": _STRING,
                "instruction": _TEXT | {"examples": ["请低洼地区群众立即转移到村委会避灾点"]},
                "expires": {
                    "type": ["string", "null"],
                    "format": "date-time",
                    "description": "With a time zone, in the future.",
                },
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
                "id": {
                    "type": "string",
                    "pattern": "^([A-Za-z0-9][A-Za-z0-9._:@+-]{0,127})?$",
                    "description": "An id of your own (empty: the service chooses); re-issuing it changes"
                    " nothing. It becomes the CAP identifier.",
                },
            },
            ("event", "level", "areas", "headline", "instruction"),
            additionalProperties=False,
            description="Unknown fields are refused with 400 naming the field; a blank headline or"
            " instruction with 400 `missing_field`. Each area must hold villages of the directory.",
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
        "UpdateProposed": {
            "allOf": [
                _ref("Alert"),
                _obj(
                    {
                        "proposal": _obj(
                            {
                                "id": _STRING,
                                "version": {"type": "integer", "minimum": 1},
                                "request": {"type": "object"},
                                "proposed_by": _STRING,
                                "role": _STRING,
                                "at": _WHEN,
                            },
                            ("id", "version", "request", "proposed_by", "role", "at"),
                            description="The update waiting for approval: the version it replaces, its"
                            " fields as sent (AlertCreate), who proposed it and when.",
                        )
                    },
                    ("proposal",),
                ),
            ],
            "description": "The issued alert, unchanged (still going out), and the update waiting.",
        },
        "Reason": _obj(
            {"reason": {"type": "string", "minLength": 1, "maxLength": 500, "pattern": NOT_BLANK}},
            ("reason",),
            additionalProperties=False,
            description="Why the alert is returned or rejected (the submitter sees it).",
        ),
        "Moves": _obj(
            {
                "alert_id": _STRING,
                "state": {"type": "string", "enum": [s.value for s in AlertState]},
                "moves": {
                    "type": "array",
                    "items": _obj(
                        {
                            "action": {"type": "string", "enum": list(MOVE_ACTIONS)},
                            "actor": _STRING,
                            "role": _STRING,
                            "at": _WHEN,
                            "reason": _STRING,
                        },
                        ("action", "actor", "role", "at", "reason"),
                    ),
                },
            },
            ("alert_id", "state", "moves"),
        ),
        "Estimate": _obj(
            {
                "villages": _INT,
                "residents": _INT,
                "must_reach": _INT,
                "phones": _INT,
                "speakers": _obj({"total": _INT, "online": _INT}, ("total", "online")),
                "channels": {
                    "type": "object",
                    "required": ["sms", "voice", "wechat", "speaker"],
                    "additionalProperties": _obj(
                        {"recipients": _INT, "segments": _INT, "seconds": {"type": "number", "minimum": 0}},
                        ("recipients", "segments", "seconds"),
                    ),
                },
                "expected_seconds": {"type": "number", "minimum": 0},
            },
            ("villages", "residents", "must_reach", "phones", "speakers", "channels", "expected_seconds"),
        ),
        "VillageTree": _obj(
            {
                "townships": {
                    "type": "array",
                    "items": _obj(
                        {
                            "code": _STRING,
                            "name": _STRING,
                            "villages": {
                                "type": "array",
                                "items": _obj(
                                    {
                                        "code": _STRING,
                                        "name": _STRING,
                                        "lat": {"type": ["number", "null"]},
                                        "lon": {"type": ["number", "null"]},
                                        "residents": _INT,
                                        "must_reach": _INT,
                                        "speakers": _INT,
                                    },
                                    ("code", "name", "lat", "lon", "residents", "must_reach", "speakers"),
                                ),
                            },
                        },
                        ("code", "name", "villages"),
                    ),
                },
                "truncated": {"type": "boolean"},
            },
            ("townships", "truncated"),
        ),
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
                            "speakers": _counts(
                                "total", "online", "played", "failed", "silent", "offline", "waiting"
                            ),
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
                    "description": "One page of open must-reach residents (at most `limit`); the counts"
                    " are complete.",
                },
                "unreached_total": _INT,
                "unreached_next": {
                    "type": ["string", "null"],
                    "description": "Pass as `cursor` for the next page of `unreached`; null on the last.",
                },
                "villages_total": _INT,
                "villages_next": {
                    "type": ["string", "null"],
                    "description": "Pass as `villages_cursor` for the next page of `villages`; null on the last.",
                },
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
                    "description": "One page (at most `limit`), in contact id order.",
                },
                "tasks_total": _INT,
                "next": {
                    "type": ["string", "null"],
                    "description": "Pass as `cursor` for the next page; null on the last.",
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
                            "checked_s_ago": {
                                "type": "number",
                                "description": "Channels: age of the cached provider check.",
                            },
                        },
                        ("ok",),
                    ),
                    "description": "`redis`, `mqtt` and `channel:NAME` per running channel. A provider's"
                    " check is cached (`server.readyz_check_ttl`), never made on every probe.",
                },
                "breakers": {
                    "type": "object",
                    "additionalProperties": _obj(
                        {
                            "state": {"type": "string", "enum": ["closed", "half_open", "open"]},
                            "workers": _INT,
                            "open": _INT,
                            "retry_in": {"type": "number"},
                        },
                        ("state", "workers", "open", "retry_in"),
                    ),
                    "description": "Per channel, the circuit breakers its workers published in the last"
                    " 30 s (the worst state; how many are open; seconds until a probe). Any not closed makes"
                    " the status `degraded`.",
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
    } | {
        "Busy": _json(
            error,
            "`busy`: every connection of the readers' own Redis pool (`redis.read_pool_size`) stayed"
            " taken for `redis.read_pool_timeout`, or the process's budget of reads (`server.read_rate` a"
            " second) is spent further ahead than that; retry after `Retry-After` seconds. Sending is"
            " unaffected: readers never use the fan-out's or the workers' connections.",
        )
        | {"headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}}}
    }


_CHANNEL: Schema = {"type": "string", "enum": sorted(REGISTRY)}
_DEAD_LETTERS: Schema = {
    "type": "object",
    "required": ["dead_letters", "totals"],
    "properties": {
        "dead_letters": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "channel", "ledger", "alert_id", "version", "recipients", "reason"],
                "properties": {
                    "id": _STRING,
                    "channel": _STRING,
                    "ledger": _STRING,
                    "alert_id": _STRING,
                    "version": {"type": "integer"},
                    "village": _STRING,
                    "audience": _STRING,
                    "attempt": {"type": "integer"},
                    "recipients": {"type": "integer"},
                    "reason": _STRING,
                },
            },
        },
        "totals": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
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
        ("Busy", "503"),
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
    alert_json = {
        "201": _json(_ref("Alert"), "Issued: validated, rendered and saved; fan-out runs after."),
        "202": _json(
            _ref("Alert"),
            "Waiting for approval (state `pending_approval`; CAP: `cap_action` too): the two-person rule"
            " applies, the texts are rendered and nothing is queued until another approver approves it.",
        ),
    }
    reason_body = {"required": True, "content": {"application/json": {"schema": _ref("Reason")}}}
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
        "403": {
            "description": "Forged or foreign token, or a resident not on the list (counted per client; summarised in the audit log once a minute; a cadre refused for a resident not on the list is audited)."
        }
        | html,
        "410": {"description": "The link expired or the alert ended."} | html,
        "429": {
            "description": "Too many invalid links from this client in a minute; try again later.",
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait.",
                    "schema": {"type": "integer", "minimum": 0},
                }
            },
        }
        | html,
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
                " cancelled one, with `cap_action` saying which. Two-person rule: an Actual alert at or"
                " above `[approval] level` (default orange; a drill too when `drills_self_approve` is"
                " false) is answered 202, state `pending_approval`: rendered, not sent, until a different"
                " approver approves it. Needs the `issue` permission.",
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
                "Invalid",
                "Unauthorized",
                "Forbidden",
                "Busy",
                parameters=[
                    _param(
                        "limit",
                        "query",
                        {"type": "integer", "default": 50},
                        "How many (at most 1000); not an integer is 400.",
                    )
                ],
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
                "Busy",
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
                    "批准预警 Approve an alert",
                    "Issues an alert waiting for approval (or a draft), or an issued alert's update waiting"
                    " for approval as its new version; recipients are queued in the background. Two-person"
                    " rule: whoever submitted or edited it (for an update: whoever proposed it) may not"
                    " approve it (409), except a drill when `[approval] drills_self_approve`. Needs"
                    " `approve`.",
                ),
            )
        },
        **{
            f"/api/v1/alerts/{{id}}/{action}": {
                "post": _api(
                    summary,
                    description,
                    {"200": _json(_ref("Alert"), "The alert as it is now.")},
                    "Invalid",
                    "Unauthorized",
                    "Forbidden",
                    "NotFound",
                    "Conflict",
                    "TooLarge",
                    "UnsupportedMediaType",
                    parameters=[_ALERT_ID],
                    requestBody=reason_body,
                )
            }
            for action, summary, description in (
                (
                    "reject",
                    "驳回预警 Reject an alert",
                    "An alert waiting for approval, or a draft, is never issued; for an issued alert whose"
                    " update waits, that update is dropped and the issued version stays."
                    ' `{"reason": "…"}` is required (400 naming `reason` without it). Needs `approve`.',
                ),
                (
                    "return",
                    "退回修改 Return an alert for edit",
                    "An alert waiting for approval goes back to its submitter as a draft, with the reason;"
                    " they revise and resubmit it under the same id. For an issued alert whose update waits,"
                    " the update goes back to its proposer (the issued version stays)."
                    ' `{"reason": "…"}` is required. Needs `approve`.',
                ),
            )
        },
        "/api/v1/alerts/{id}/moves": {
            "get": _api(
                "经办记录 An alert's moves",
                "Who did what to the alert and when, oldest first: submit, return, revise, approve,"
                " reject, issue, propose_update, update, cancel — with the reason where one was given."
                " Needs `read`.",
                {"200": _json(_ref("Moves"), "The moves.")},
                "Unauthorized",
                "Forbidden",
                "NotFound",
                parameters=[_ALERT_ID],
            ),
        },
        "/api/v1/alerts/estimate": {
            "post": _api(
                "覆盖预估 Estimate an alert's reach",
                "The same JSON body as issuing (the headline and instruction may still be blank); answers"
                " whom it would reach — residents and must-reach residents in the areas, distinct phones"
                " the SMS and voice lanes would call, loudspeakers and how many are online now — and per"
                " channel the messages, SMS segments and seconds at the configured provider rates;"
                " `expected_seconds` is the slowest channel's time to its last first attempt. Nothing is"
                " saved or queued. Needs `issue`.",
                {"200": _json(_ref("Estimate"), "The estimate.")},
                "Invalid",
                "Unauthorized",
                "Forbidden",
                "TooLarge",
                "UnsupportedMediaType",
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("AlertCreate")}},
                },
            ),
        },
        "/api/v1/directory/villages": {
            "get": _api(
                "村庄目录 Townships and villages",
                "The directory as the area picker shows it: townships, each with its villages' code,"
                " name, coordinates and counts (residents, must-reach, loudspeakers). `q` keeps the"
                " villages whose name, township name or code contains it; at most 5000 villages"
                " (`truncated` says when more matched). Needs `read`.",
                {"200": _json(_ref("VillageTree"), "The townships and villages.")},
                "Invalid",
                "Unauthorized",
                "Forbidden",
                "Busy",
                parameters=[
                    _param("q", "query", {"type": "string", "maxLength": 64}, "A name or code to search for.")
                ],
            ),
        },
        "/api/v1/alerts/{id}/events": {
            "get": _api(
                "实时进度 Progress events",
                "Server-sent events: `progress` every second (deliveries per ledger and state, must-reach"
                " counts, unreached total) while the alert is issued, then one `end`. Needs `read`.",
                {
                    "200": {
                        "description": "An event stream (`event: progress|end`, `data:` one JSON object).",
                        "content": {
                            "text/event-stream": {
                                # One schema per event, as schemathesis and OpenAPI 3.2's itemSchema read it.
                                "schema": _obj(
                                    {
                                        "event": {"type": "string", "enum": ["progress", "end"]},
                                        "data": {"type": "string", "contentMediaType": "application/json"},
                                    },
                                    ("event", "data"),
                                )
                            }
                        },
                    }
                },
                "Unauthorized",
                "Forbidden",
                "NotFound",
                "Busy",
                parameters=[_ALERT_ID],
            ),
        },
        "/api/v1/alerts/{id}/update": {
            "post": _api(
                "更新预警 Update an alert",
                "A new version of an issued alert (same body as issuing one): 200, everyone in the (new)"
                " area is sent it in the background, marked as an update. Two-person rule, judged on the"
                " update's level (and the alert's own kind: an Actual alert stays under the rule): at or"
                " above `[approval] level` it is answered 202 — the issued version stays as it is and"
                " keeps going out, and the update waits as the alert's `proposal` until an approver other"
                " than its proposer approves it (`/approve` issues it as the new version; `/return` and"
                " `/reject` with a reason drop it). A second proposal replaces a waiting one. Needs"
                " `issue`.",
                {
                    "200": _json(_ref("Alert"), "The new version; recipients are queued in the background."),
                    "202": _json(_ref("UpdateProposed"), "Waiting for approval; nothing new is sent."),
                },
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
                " them. Every figure comes from counters; `villages` and `unreached` are pages (cursor"
                " and limit, hard maximums). Identical reads within `server.read_cache_ttl` (0.75 s) share"
                " one answer. Needs `read`.",
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
                "Busy",
                parameters=[
                    _ALERT_ID,
                    _param(
                        "limit",
                        "query",
                        {"type": "integer", "default": 100},
                        "At most this many unreached residents in this page (clamped to 1…1000).",
                    ),
                    _param(
                        "cursor",
                        "query",
                        {"type": "string", "pattern": "^([0-9]{1,19}\\.[0-9]{1,19})?$"},
                        "`unreached_next` of the previous page; absent or empty for the first page.",
                    ),
                    _param(
                        "villages_limit",
                        "query",
                        {"type": "integer", "default": 50},
                        "At most this many villages in this page (clamped to 1…500).",
                    ),
                    _param(
                        "villages_cursor",
                        "query",
                        {"type": "string", "pattern": "^[0-9]{0,9}$"},
                        "`villages_next` of the previous page; absent or empty for the first page.",
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
                "Invalid",
                "Unauthorized",
                "Forbidden",
                "NotFound",
                "Busy",
                parameters=[
                    _ALERT_ID,
                    _param(
                        "limit",
                        "query",
                        {"type": "integer", "default": 500},
                        "At most this many task lists in this page (clamped to 1…1000).",
                    ),
                    _param(
                        "cursor",
                        "query",
                        {"type": "string", "pattern": "^[0-9]{0,19}$"},
                        "`next` of the previous page; absent or empty for the first page.",
                    ),
                ],
            ),
        },
        "/api/v1/deadletters": {
            "get": _api(
                "死信 Dead letters",
                "Deliveries no retry can fix (a number the provider refused, an adapter bug), oldest"
                " first, at most `limit` batches per channel, with each channel's total. Transient"
                " failures are never here: they are retried until the alert expires. Needs `read`.",
                {"200": _json(_DEAD_LETTERS, "The dead letters.")},
                "Invalid",
                "Unauthorized",
                "Forbidden",
                parameters=[
                    _param(
                        "channel",
                        "query",
                        {"oneOf": [_CHANNEL, {"const": ""}]},
                        "Only this channel (absent or empty: every channel).",
                    ),
                    _param(
                        "limit",
                        "query",
                        {"type": "integer", "default": 100},
                        "At most this many batches per channel (clamped to 1…1000).",
                    ),
                ],
            ),
        },
        "/api/v1/deadletters/requeue": {
            "post": _api(
                "死信重发 Requeue dead letters",
                "Puts a channel's dead letters (`{}`: every channel's) back in the queue with a fresh"
                " attempt count, once the cause is fixed. Audited. Needs `cancel`.",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["requeued"],
                            "properties": {
                                "requeued": {"type": "object", "additionalProperties": {"type": "integer"}}
                            },
                        },
                        "Deliveries requeued per channel.",
                    )
                },
                "Invalid",
                "Unauthorized",
                "Forbidden",
                "TooLarge",
                "UnsupportedMediaType",
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "channel": {
                                        "oneOf": [_CHANNEL, {"type": "null"}, {"const": ""}],
                                        "description": "null, empty or absent: every channel.",
                                    }
                                },
                            }
                        }
                    },
                },
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
                },
                "cookieAuth": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "warning_session",
                    "description": "The console's session (after `POST /login`), with the same roles;"
                    " a request other than GET/HEAD must also send `X-CSRF-Token` (the page's"
                    ' `<meta name="csrf">`), else 403.',
                },
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

    @public
    async def openapi(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/json", charset="utf-8")

    return [web.get(OPENAPI_PATH, openapi)]
