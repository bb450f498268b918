"""`warning serve` says at start-up when its links would not open on a phone (no usable public URL)."""

from __future__ import annotations

import signal

from tests.e2e.conftest import Cli


def test_serve_without_a_public_url_says_links_are_withheld(cli: Cli) -> None:
    """With server.public_url unset, serve prints a 注意 line naming WARNING_SERVER_PUBLIC_URL, in
    English with --lang en."""
    for args, expected in (
        (("serve",), "注意：server.public_url 未设置"),
        (("--lang", "en", "serve"), "NOTE: server.public_url is unset"),
    ):
        process = cli.start(*args)
        cli.wait_healthy(process)
        assert cli.stop(process, signal.SIGTERM) == 0
        output = process.stdout.read() if process.stdout else ""
        assert expected in output and "WARNING_SERVER_PUBLIC_URL" in output, output
