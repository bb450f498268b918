"""`warning feeds poll` as an operator runs it: a configured Atom feed on a loopback server becomes alerts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli
from warning.cap.emit import emit_cap
from warning.model import Alert, AlertStatus, Level

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><id>urn:test</id><title>CMA</title><updated>{now}</updated>
{entries}</feed>"""
ENTRY = """<entry><id>{id}</id><title>{id}</title><updated>{now}</updated>
<link rel="alternate" type="application/cap+xml" href="http://127.0.0.1:{port}/{id}.xml"/></entry>"""


@pytest.fixture
def feed_server(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A loopback HTTP server for the feed and its CAP files (a thread; stopped after the test)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, server.server_address[1]
    server.shutdown()


def _publish(root: Path, port: int, alerts: list[Alert]) -> None:
    now = datetime.now(UTC).isoformat()
    for alert in alerts:
        (root / f"{alert.id}.xml").write_bytes(
            emit_cap(alert, sender="cma@example.cn", sender_name="气象台", villages=[])
        )
    entries = "\n".join(ENTRY.format(id=a.id, now=now, port=port) for a in alerts)
    (root / "feed.atom").write_text(ATOM.format(now=now, entries=entries), encoding="utf-8")


def test_feed_poll_issues_and_deduplicates(
    embedded_cli: Cli, feed_server: tuple[Path, int], tmp_path: Path
) -> None:
    """A typhoon entry matching an `issue` rule becomes an issued alert; a Test one is ignored; repeats are duplicates."""
    root, port = feed_server
    expires = datetime.now(UTC) + timedelta(hours=3)
    typhoon = Alert(
        "CMA-FEED-1",
        "cma@example.cn",
        datetime.now(UTC),
        "台风",
        Level.RED,
        ("331099101",),
        headline="台风红色预警",
        instruction="立即转移。",
        expires=expires,
        event_code="11B01",
    )
    test = Alert(
        "CMA-FEED-2",
        "cma@example.cn",
        datetime.now(UTC),
        "台风",
        Level.RED,
        ("331099101",),
        headline="测试",
        expires=expires,
        status=AlertStatus.TEST,
    )
    _publish(root, port, [typhoon, test])
    config = tmp_path / "warning.toml"
    config.write_text(
        f"""
[[feeds]]
name = "cma"
url = "http://127.0.0.1:{port}/feed.atom"
format = "atom"
interval = "5m"
allow_private = true   # the test feed is on loopback; production feeds never need this
[[feeds.rules]]
events = ["11B01"]
min_level = "orange"
area_prefixes = ["331099"]
action = "issue"
""",
        encoding="utf-8",
    )
    embedded_cli.env["WARNING_CONFIG"] = str(config)
    embedded_cli.run(
        "directory",
        "import",
        *[
            str(p)
            for p in sorted(
                (Path(__file__).resolve().parents[2] / "warning" / "sample" / "data").glob("*.csv")
            )
        ],
    )

    first = embedded_cli.run("feeds", "poll")
    assert first.returncode == 0, first.stderr
    assert "CMA-FEED-1" in first.stdout and "issue" in first.stdout and "ignored" in first.stdout
    status = json.loads(embedded_cli.run("status", "CMA-FEED-1", "--json").stdout)
    assert status["alert"]["state"] == "issued" and status["deliveries"]["sms"]["queued"] > 0

    again = embedded_cli.run("feeds", "poll")
    assert again.returncode == 0 and "duplicate" in again.stdout and "issue " not in again.stdout
