"""Which public URLs phones can open: loopback, wildcard and localhost names (or none) cannot."""

from __future__ import annotations

import pytest

from warning.config import ServerSettings
from warning.i18n import set_language
from warning.public_url import local_only, public_url_problem


@pytest.mark.parametrize(
    "url",
    [
        "",
        "http://127.0.0.1:8080",
        "http://127.1.2.3",
        "http://0.0.0.0:8080",
        "http://[::1]:8080",
        "http://[::]:8080",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost:8080",
        "http://LOCALHOST./",
        "http://warning.localhost",
    ],
)
def test_local_only_urls_are_a_problem(url: str) -> None:
    """Unset or this-machine-only URLs get the 注意 notice naming the variable to set."""
    problem = public_url_problem(ServerSettings(public_url=url))
    assert local_only(url)
    assert problem is not None and problem.startswith("注意") and "WARNING_SERVER_PUBLIC_URL" in problem


@pytest.mark.parametrize(
    "url",
    ["https://warning.example.gov.cn", "http://10.1.2.3:8080", "http://192.168.1.5", "http://[2001:db8::1]/"],
)
def test_reachable_urls_are_fine(url: str) -> None:
    """A DNS name or a non-loopback address (a county intranet) is taken as openable."""
    assert public_url_problem(ServerSettings(public_url=url)) is None


def test_the_notice_is_in_english_too() -> None:
    """With --lang en the notice is English and says drills keep their links."""
    set_language("en")
    try:
        problem = public_url_problem(ServerSettings())
    finally:
        set_language("zh-CN")
    assert problem is not None and problem.startswith("NOTE") and "drills keep the links" in problem
