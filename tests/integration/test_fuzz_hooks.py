"""Properties of the provider webhooks (web/hooks.py, voice_hooks.py, signatures.py, bodies.py) over HTTP.

Against the whole service on loopback (the `live` service of test_schemathesis.py: real Redis, the
sample county, a real issued drill): any body of any content type, signed or not, is answered 2xx, 400,
403, 413 or 415, never 5xx; a signed Twilio callback changed in any way (a parameter's name or value,
one added or removed, the query, the signature) is 403 and records nothing; any WeChat body under a
valid signature is `success` or a 400 with our JSON error. `WARNING_FUZZ_EXAMPLES` raises the budget.
"""

from __future__ import annotations

import os
import time
import uuid
from urllib.parse import quote, urlencode

import pytest
import requests
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

# The service fixture `live` (module-scoped: one service for this module's properties).
from tests.integration.test_schemathesis import Live, live_service  # noqa: F401
from warning.sandbox.twilio_callbacks import sign
from warning.web.signatures import wechat_signature
from warning.web.voice_hooks import VOICE_HOOKS

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("WARNING_FUZZ_EXAMPLES", "0")) or 60
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
TWILIO_ROUTES = [
    "/hooks/twilio/status",
    "/hooks/twilio/sms",
    f"{VOICE_HOOKS}/twiml",
    f"{VOICE_HOOKS}/gather",
    f"{VOICE_HOOKS}/status",
]
ALLOWED = {200, 204, 400, 403, 413, 415}
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
FORM = st.dictionaries(
    st.sampled_from(["MessageSid", "MessageStatus", "CallSid", "CallStatus", "Digits", "From", "Body", "To"])
    | TEXT.filter(bool),
    st.sampled_from(["delivered", "failed", "completed", "1", "+8613800000000", ""]) | TEXT,
    max_size=6,
)
QUERY = st.dictionaries(
    st.sampled_from(["d", "n", "r"]),
    st.sampled_from(["a:1:sms:r:R1", "a:1:voice:r:R1", "1", "0", "²", ""]) | TEXT,
    max_size=3,
)
MEDIA = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=latin-1",
        "application/json",
        "text/xml",
        "multipart/form-data; boundary=x",
        "",
    ]
)

_session: list[requests.Session] = []


def http() -> requests.Session:
    if not _session:
        _session.append(requests.Session())
    return _session[0]


def _url(live: Live, path: str, query: dict[str, str]) -> str:
    return live.base_url + path + ("?" + urlencode(query, quote_via=quote) if query else "")


def _check(response: requests.Response) -> None:
    assert response.status_code in ALLOWED, (response.status_code, response.text[:500])
    if response.status_code in (400, 413, 415) and response.headers.get("Content-Type", "").startswith(
        "application/json"
    ):
        assert "error" in response.json()


@FUZZ
@given(st.sampled_from(TWILIO_ROUTES), QUERY, FORM, st.booleans())
def test_any_twilio_form_is_answered_never_500(
    live: Live, path: str, query: dict[str, str], form: dict[str, str], signed: bool
) -> None:
    """Any form to any Twilio hook, validly signed or not: 2xx, 400 or 403, never 5xx."""
    url = _url(live, path, query)
    headers = {"I-Twilio-Idempotency-Token": uuid.uuid4().hex}
    try:
        body = urlencode(form).encode()
    except UnicodeEncodeError:
        return
    headers["X-Twilio-Signature"] = sign(url, form, live.twilio_token) if signed else "forged"
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    response = http().post(url, data=body, headers=headers, timeout=30)
    _check(response)
    if not signed:
        assert response.status_code in (400, 403, 413, 415), response.status_code


@FUZZ
@given(st.sampled_from([*TWILIO_ROUTES, "/hooks/wechat"]), MEDIA, st.binary(max_size=2048))
def test_any_body_of_any_type_is_answered_never_500(live: Live, path: str, media: str, body: bytes) -> None:
    """Arbitrary bytes under any Content-Type (or none) to any webhook: 4xx or a clear answer, never 5xx."""
    headers = {"X-Twilio-Signature": "x"} | ({"Content-Type": media} if media else {})
    _check(http().post(live.base_url + path, data=body, headers=headers, timeout=30))


MUTATIONS = st.sampled_from(["value", "name", "add", "remove", "query", "signature", "path"])


@FUZZ
@given(st.sampled_from(TWILIO_ROUTES), FORM.filter(bool), MUTATIONS, TEXT, st.data())
def test_any_change_to_a_signed_twilio_callback_is_refused(
    live: Live, path: str, form: dict[str, str], mutation: str, text: str, data: st.DataObject
) -> None:
    """A signed callback with one parameter's value or name changed, one added or removed, its query or
    path changed, or its signature altered, is 403: the signature covers all of it."""
    query = {"d": f"{live.alert_ids[0]}:1:sms:r:R0000308", "n": "1"}
    url = _url(live, path, query)
    signature = sign(url, form, live.twilio_token)
    sent_form, sent_url, sent_signature = dict(form), url, signature
    key = data.draw(st.sampled_from(sorted(form)), label="key")
    if mutation == "value":
        assume(text != form[key])
        sent_form[key] = text
    elif mutation == "name":
        assume(text and text not in form)
        sent_form[text] = sent_form.pop(key)
    elif mutation == "add":
        assume(text and text not in form)
        sent_form[text] = "x"
    elif mutation == "remove":
        del sent_form[key]
    elif mutation == "query":
        sent_url = _url(live, path, query | {"d": query["d"] + (text or "x")})
    elif mutation == "path":
        other = data.draw(st.sampled_from([p for p in TWILIO_ROUTES if p != path]), label="other")
        sent_url = _url(live, other, query)
    else:
        at = data.draw(st.integers(0, len(signature) - 1), label="at")
        sent_signature = signature[:at] + ("A" if signature[at] != "A" else "B") + signature[at + 1 :]
    # Equal parameter sets sign alike (Twilio sorts them), and some texts are not sendable at all.
    assume(sign(sent_url, sent_form, live.twilio_token) != signature or sent_signature != signature)
    try:
        body = urlencode(sent_form).encode()
    except UnicodeEncodeError:
        return
    headers = {
        "X-Twilio-Signature": sent_signature,
        "Content-Type": "application/x-www-form-urlencoded",
        "I-Twilio-Idempotency-Token": uuid.uuid4().hex,
    }
    response = http().post(sent_url, data=body, headers=headers, timeout=30)
    assert response.status_code in (400, 403), (response.status_code, response.text[:300])
    if response.status_code == 400:
        # Only a body that is no readable form is refused before its signature is checked.
        assert response.json()["error"]["code"] == "invalid_body", response.text


def _wechat_query(live: Live, nonce: str) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        "timestamp": timestamp,
        "nonce": nonce,
        "signature": wechat_signature(live.wechat_token, timestamp, nonce),
    }


WECHAT_BODIES = st.one_of(
    st.binary(max_size=1024),
    st.builds(
        lambda event, status, msg: (
            f"<xml><Event>{event}</Event><Status>{status}</Status><MsgID>{msg}</MsgID></xml>"
        ).encode("utf-8", "surrogatepass"),
        st.sampled_from(["TEMPLATESENDJOBFINISH", "subscribe", ""]) | TEXT,
        st.sampled_from(["success", "failed:user block", ""]) | TEXT,
        st.sampled_from(["1", "0", "99999999999999999999"]) | TEXT,
    ),
    st.sampled_from(
        [
            b'<?xml version="1.0" encoding="no-such"?><xml/>',
            b'<!DOCTYPE x [<!ENTITY a "aaaa">]><xml>&a;</xml>',
            b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><xml/>',
            b"<xml>" * 500,
            b"\xef\xbb\xbf<xml/>",
        ]
    ),
)


@FUZZ
@given(WECHAT_BODIES)
def test_any_signed_wechat_event_is_success_or_400(live: Live, body: bytes) -> None:
    """A validly signed WeChat event with any body is `success` or 400 with our JSON error, never 5xx."""
    query = _wechat_query(live, uuid.uuid4().hex)
    response = http().post(_url(live, "/hooks/wechat", query), data=body, timeout=30)
    if response.status_code == 200:
        assert response.text == "success"
    else:
        assert response.status_code in (400, 413), (response.status_code, response.text[:300])
        if response.status_code == 400:
            assert response.json()["error"]["code"] == "invalid_body"


@FUZZ
@given(st.dictionaries(st.sampled_from(["timestamp", "nonce", "signature", "echostr"]), TEXT, max_size=4))
def test_unsigned_wechat_requests_are_refused(live: Live, query: dict[str, str]) -> None:
    """Without WeChat's signature both the URL check and events are 403, whatever the query holds."""
    try:
        url = _url(live, "/hooks/wechat", query)
    except UnicodeEncodeError:
        return
    assert http().get(url, timeout=30).status_code == 403
    assert http().post(url, data=b"<xml/>", timeout=30).status_code == 403


def test_the_fuzzers_signatures_are_accepted(live: Live) -> None:
    """The signing the properties use is Twilio's: a signed reply is 200 TwiML, a signed receipt is not
    403 (so the properties above do reach past the signature check)."""
    form = {"From": "+8613800000000", "Body": "收到", "MessageSid": "SMfuzz"}
    url = _url(live, "/hooks/twilio/sms", {})
    headers = {"X-Twilio-Signature": sign(url, form, live.twilio_token), "I-Twilio-Idempotency-Token": "t1"}
    response = http().post(url, data=form, headers=headers, timeout=30)
    assert response.status_code == 200 and "<Response" in response.text
    receipt = {"MessageSid": "SMfuzz", "MessageStatus": "delivered"}
    url = _url(live, "/hooks/twilio/status", {"d": "nope:1:sms:r:R0"})
    headers = {
        "X-Twilio-Signature": sign(url, receipt, live.twilio_token),
        "I-Twilio-Idempotency-Token": "t2",
    }
    response = http().post(url, data=receipt, headers=headers, timeout=30)
    assert response.status_code in (204, 400), (response.status_code, response.text)  # past the check
