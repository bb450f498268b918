"""Reading request input: JSON objects and url-encoded forms, UTF-8 only, and query parameters, refused
with our error body.

Every route that reads a body reads it here, so a body that is too large, not UTF-8, not JSON, not an
object, absurdly deep or of the wrong content type is a 400/413/415 `{"error": {"code", "message"}}`
and never a 500. Webhooks read their form here *before* the signature check: an unreadable body has
nothing to check, and a readable one with a bad signature is still 403. A query parameter of the API is
read with `query_value`/`int_param`: given twice it is a 400 naming it (which one would be meant?).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import hdrs, web

from warning.errors import FieldError
from warning.i18n import t

JSON_TYPES = ("application/json",)
FORM_TYPES = ("application/x-www-form-urlencoded",)
_UTF8 = ("utf-8", "utf8")
_MAX_FIELDS = 1000  # a form of ours has a handful; Twilio's a few dozen


def error_document(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """Our error body (DESIGN §5.2): `{"error": {"code", "message", "field"?}}`."""
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return {"error": body}


def _refusal(status: type[web.HTTPException], code: str, message: str) -> web.HTTPException:
    return status(
        text=json.dumps(error_document(code, message), ensure_ascii=False),
        content_type="application/json",
    )


def invalid_body(message: str) -> web.HTTPException:
    return _refusal(web.HTTPBadRequest, "invalid_body", message)


def _invalid_json(message: str) -> web.HTTPException:
    return _refusal(web.HTTPBadRequest, "invalid_json", message)


async def read_bytes(request: web.Request) -> bytes:
    """The raw body, at most the app's `client_max_size`.

    Raises:
        web.HTTPRequestEntityTooLarge: over the limit (413, our error body).
        web.HTTPBadRequest: the client went away before the body ended (the console's live preview
            drops a request when the operator types on; nobody reads the answer, and nothing is logged).
    """
    try:
        return await request.read()
    except ConnectionResetError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps(
                error_document("invalid_body", t("请求体不完整", "the request body was cut off")),
                ensure_ascii=False,
            ),
            content_type="application/json",
        ) from exc
    except web.HTTPRequestEntityTooLarge as exc:
        raise web.HTTPRequestEntityTooLarge(
            max_size=request.client_max_size,
            actual_size=request.content_length or request.client_max_size + 1,
            text=json.dumps(
                error_document("too_large", t("请求体超过 1 MiB", "the request body is over 1 MiB")),
                ensure_ascii=False,
            ),
            content_type="application/json",
        ) from exc


def _media_type(request: web.Request) -> str:
    """The declared media type, "" when the request has no Content-Type at all."""
    return request.content_type if hdrs.CONTENT_TYPE in request.headers else ""


async def read_text(request: web.Request, accepted: tuple[str, ...], *, what: str) -> str:
    """The body as text, if its Content-Type is one of `accepted` (or absent) and it is UTF-8.

    Raises:
        web.HTTPUnsupportedMediaType: another Content-Type (415, naming what to send).
        web.HTTPBadRequest: `invalid_body`, the body or its declared charset is not UTF-8.
        web.HTTPRequestEntityTooLarge: over 1 MiB.
    """
    media = _media_type(request)
    if media and media not in accepted and not (accepted == JSON_TYPES and media.endswith("+json")):
        raise _refusal(
            web.HTTPUnsupportedMediaType,
            "unsupported_media_type",
            t(
                "请求体应为 {w}：请加请求头 Content-Type: {a}（收到的是 {m}）",
                "the body must be {w}: send Content-Type: {a} (got {m})",
                w=what,
                a=accepted[0],
                m=media,
            ),
        )
    if request.charset is not None and request.charset.lower() not in _UTF8:
        raise invalid_body(
            t(
                "请求体必须是 UTF-8 编码（Content-Type 声明了 charset={c}）",
                "the body must be UTF-8 (Content-Type declares charset={c})",
                c=request.charset,
            )
        )
    raw = await read_bytes(request)
    try:
        # A leading BOM (Windows tools add one) is not part of the text.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise invalid_body(
            t(
                "请求体必须是 UTF-8 编码（第 {p} 字节无效）",
                "the body must be UTF-8 (invalid byte at offset {p})",
                p=exc.start,
            )
        ) from None


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are not JSON (RFC 8259)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (`application/json`, UTF-8).

    Raises:
        web.HTTPBadRequest: `invalid_json` (empty, malformed, not an object, numbers too long, too deep)
            or `invalid_body` (not UTF-8).
        web.HTTPUnsupportedMediaType, web.HTTPRequestEntityTooLarge: see `read_text`.
    """
    text = await read_text(request, JSON_TYPES, what="JSON")
    if not text.strip():
        raise _invalid_json(t("请求体为空：应为 JSON 对象", "the body is empty: send a JSON object"))
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise _invalid_json(
            t(
                "JSON 无效：第 {l} 行第 {c} 列：{e}",
                "invalid JSON at line {l} column {c}: {e}",
                l=exc.lineno,
                c=exc.colno,
                e=exc.msg,
            )
        ) from None
    except (ValueError, RecursionError):
        # Integers over 4300 digits, NaN/Infinity, or nesting deeper than the parser's stack.
        raise _invalid_json(
            t(
                "JSON 无效：含 NaN/Infinity、过长的数字或嵌套过深",
                "invalid JSON: NaN/Infinity, a number too long, or nesting too deep",
            )
        ) from None
    if not isinstance(value, dict):
        raise _invalid_json(t("请求体应为 JSON 对象 {…}", "the body must be a JSON object {…}"))
    return value


async def read_form(request: web.Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body (UTF-8) as a dict; a repeated field keeps its last value.

    Raises:
        web.HTTPBadRequest: `invalid_body` (not UTF-8, before or after percent-decoding; too many fields).
        web.HTTPUnsupportedMediaType, web.HTTPRequestEntityTooLarge: see `read_text`.
    """
    text = await read_text(request, FORM_TYPES, what=t("表单", "a form"))
    try:
        pairs = parse_qsl(
            text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=_MAX_FIELDS
        )
    except UnicodeDecodeError:
        raise invalid_body(
            t("表单字段必须是 UTF-8 编码", "form fields must be UTF-8 (percent-encoded bytes are not)")
        ) from None
    except ValueError:
        raise invalid_body(
            t("表单字段过多（最多 {n} 个）", "too many form fields (at most {n})", n=_MAX_FIELDS)
        ) from None
    return dict(pairs)


def query_value(request: web.Request, name: str, default: str = "") -> str:
    """A query parameter given at most once.

    Raises:
        FieldError: it was given more than once.
    """
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise FieldError(t("{f} 只能给一次", "{f} may be given only once", f=name), field=name)
    return values[0] if values else default


def int_param(request: web.Request, name: str, default: int, most: int) -> int:
    """A positive integer query parameter (once), clamped to 1..`most`.

    Raises:
        FieldError: not an integer, or given more than once.
    """
    try:
        return max(1, min(most, int(query_value(request, name, str(default)))))
    except ValueError:
        raise FieldError(t("{f} 应为整数", "{f} must be an integer", f=name), field=name) from None
