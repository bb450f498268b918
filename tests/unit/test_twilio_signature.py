"""Our one-HMAC Twilio signature is the twilio library's own, for any form (the fast path of
warning.web.signatures.twilio_valid must never accept or refuse differently from the library)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from warning.web.signatures import twilio_signature

TOKEN = "12345678901234567890123456789012"
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(
    url=st.sampled_from(
        [
            "https://example.org/hooks/twilio/status",
            "http://127.0.0.1:8080/hooks/twilio/status?d=abc%3A1&v=2",
            "https://县应急局.example/hooks/twilio/voice/gather?k=上岩村",
        ]
    ),
    params=st.dictionaries(names, values, max_size=12),
)
def test_the_signature_is_the_librarys(url: str, params: dict[str, str]) -> None:
    expected = RequestValidator(TOKEN).compute_signature(url, params)
    assert twilio_signature(TOKEN, url, params) == expected
    assert RequestValidator(TOKEN).validate(url, params, twilio_signature(TOKEN, url, params))


def test_a_changed_value_or_token_changes_it() -> None:
    params = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    url = "https://example.org/hooks/twilio/status"
    signature = twilio_signature(TOKEN, url, params)
    assert twilio_signature(TOKEN, url, params | {"MessageStatus": "failed"}) != signature
    assert twilio_signature(TOKEN[::-1], url, params) != signature
    assert twilio_signature(TOKEN, url + "?x=1", params) != signature
