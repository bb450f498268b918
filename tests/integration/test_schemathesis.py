"""Schemathesis over the OpenAPI document the service serves, against the whole service on loopback.

The service runs in a thread of its own (real Redis or the embedded one, the sample county, no channel
workers: nothing is sent, queued deliveries stay in Redis and go with the namespace). The `st` command
line runs every phase (examples, coverage, fuzzing, stateful) and every check it has (its default),
exactly as an outside run would, seeded so a failure reproduces. tests/integration/schemathesis_hooks.py
puts data the service holds into generated *valid* requests (a sample village, a future expiry, real
alert ids, a real CAP drill, provider signatures), so they get past 400 to the real work.

`WARNING_FUZZ_EXAMPLES` (default 25) is the examples per operation; `make test-faults` runs 500.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Servers, _drop_namespace, free_port, new_namespace, start_app
from warning.broadcast import AlertRequest
from warning.config import MqttSettings, Settings
from warning.model import AlertStatus, Level
from warning.users import Users
from warning.web.app import BROADCASTER, STORE, TWILIO_TOKEN, WECHAT_TOKEN, build_app
from warning.web.openapi import OPENAPI_PATH

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("WARNING_FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("WARNING_FUZZ_SEED", "20261203"))
VILLAGE = "331099101203"  # one village of the sample county: every issued drill reaches a hundred people
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ST = Path(sys.executable).with_name("st")


@dataclass(frozen=True)
class Live:
    base_url: str
    token: str
    namespace: str
    alert_ids: tuple[str, ...]  # an issued drill, a cancelled drill
    twilio_token: str
    wechat_token: str


def _settings(servers: Servers, namespace: str, port: int) -> Settings:
    base = Settings()
    return replace(
        base,
        server=replace(base.server, host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}"),
        redis=replace(base.redis, url=servers.redis_url, namespace=namespace, allow_volatile=True),
        mqtt=MqttSettings(
            url=servers.mqtt_url or "", embedded_port=0, topic_prefix=f"t{uuid.uuid4().hex[:8]}"
        ),
    )


def _drill(alert_id: str) -> AlertRequest:
    return AlertRequest(
        event="台风",
        level=Level.BLUE,
        areas=(VILLAGE,),
        headline="演练",
        instruction="演练，无需行动。",
        expires=datetime.now(UTC) + timedelta(hours=2),
        exercise=True,
        id=alert_id,
    )


@pytest.fixture(scope="module", name="live")
def live_service(servers: Servers) -> Iterator[Live]:
    """The whole service on a loopback port in a thread with its own event loop, until the module ends."""
    namespace, port = new_namespace(), free_port()
    loop = asyncio.new_event_loop()
    ready: list[Live | BaseException] = []
    started = threading.Event()
    stop = asyncio.Event()

    async def run() -> None:
        app = build_app(_settings(servers, namespace, port), load_sample=True, channels=[])
        runner = await start_app(app, port)
        try:
            token = await Users(app[STORE].redis, app[STORE].keys).add("schemathesis", "admin")
            service = app[BROADCASTER]
            issued, _ = await service.issue(_drill(f"fuzz-issued-{namespace}"), actor="schemathesis")
            cancelled, _ = await service.issue(_drill(f"fuzz-cancelled-{namespace}"), actor="schemathesis")
            await service.cancel(cancelled.id, silent=True, actor="schemathesis", role="admin")
            ready.append(
                Live(
                    f"http://127.0.0.1:{port}",
                    token,
                    namespace,
                    (issued.id, cancelled.id),
                    app[TWILIO_TOKEN],
                    app[WECHAT_TOKEN],
                )
            )
        except BaseException as exc:
            ready.append(exc)
            started.set()
            await runner.cleanup()
            raise
        started.set()
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    thread = threading.Thread(target=lambda: loop.run_until_complete(run()), name="schemathesis-service")
    thread.start()
    assert started.wait(120), "the service did not start in 120 s"
    try:
        result = ready[0]
        if isinstance(result, BaseException):
            raise result
        yield result
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(120)
        loop.close()
        _drop_namespace(servers.redis_url, namespace)


def _listed_alerts(live: Live) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        live.base_url + "/api/v1/alerts?limit=1000", headers={"Authorization": f"Bearer {live.token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        alerts: list[dict[str, Any]] = json.loads(response.read())["alerts"]
    return alerts


@pytest.mark.timeout(1800)  # 25 examples take about a minute; `make test-faults`' 500 take many
def test_schemathesis_finds_nothing(live: Live, servers: Servers, tmp_path: Path) -> None:
    """Every phase and every check of schemathesis passes over the served document: no 5xx, every status,
    content type, header and body as documented, invalid input refused, valid input accepted."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks",
        "WARNING_FUZZ_AREA": VILLAGE,
        "WARNING_FUZZ_ALERT_IDS": ",".join(live.alert_ids),
        "WARNING_FUZZ_PUBLIC_URL": live.base_url,
        "WARNING_FUZZ_TWILIO_TOKEN": live.twilio_token,
        "WARNING_FUZZ_WECHAT_TOKEN": live.wechat_token,
    }
    command = [
        str(ST),
        "--no-color",
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        live.base_url + OPENAPI_PATH,
        "--header",
        f"Authorization: Bearer {live.token}",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",  # hypothesis' lambda introspection is not thread-safe on Python 3.11 (a spurious error)
        "--request-timeout",
        "30",
        "--output-truncate",
        "false",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    started = time.monotonic()
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"schemathesis failed ({elapsed:.0f} s, seed {SEED}):\n{output[-30000:]}"
    assert "generated" in output and " passed" in output, output[-3000:]
    # The run reached the real work (generated JSON and CAP drills were issued), and issued only drills.
    alerts = _listed_alerts(live)
    generated = [a for a in alerts if a["id"] not in live.alert_ids]
    assert any(a["id"].startswith("fuzz-") for a in generated), "no generated CAP drill was issued"
    assert any(not a["id"].startswith("fuzz-") for a in generated), "no generated JSON drill was issued"
    assert all(a["status"] == AlertStatus.EXERCISE.value and a["exercise"] for a in alerts), [
        (a["id"], a["status"]) for a in alerts if not a["exercise"]
    ]
    print(
        f"schemathesis: {EXAMPLES} examples per operation, seed {SEED}, {elapsed:.1f} s, {len(generated)} drills"
    )


def test_the_inputs_schemathesis_found_stay_fixed(live: Live) -> None:
    """Each input that once broke the service (a 500, an undocumented answer) is answered as documented."""
    import requests

    from warning.cap import parse_cap

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {live.token}"
    issued = live.alert_ids[0]
    # A reach cursor past Redis' 64-bit SCAN cursor was a Redis error, a 500.
    for cursor in ("18446744073709551616.0", "99999999999999999999999.0"):
        response = session.get(f"{live.base_url}/api/v1/alerts/{issued}/reach", params={"cursor": cursor})
        assert response.status_code == 400 and response.json()["error"]["field"] == "cursor"
    # An unknown format was answered as JSON.
    response = session.get(f"{live.base_url}/api/v1/alerts/{issued}/reach", params={"format": "xml"})
    assert response.status_code == 400 and response.json()["error"]["field"] == "format"
    # GET /api/v1/alerts/preview was read as the alert "preview"; the route is POST only.
    response = session.get(f"{live.base_url}/api/v1/alerts/preview")
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    drill: dict[str, Any] = {
        "event": "台风",
        "level": "blue",
        "areas": [VILLAGE],
        "headline": "演练\x0b标题\x00",
        "instruction": "演练\x1f",
        "exercise": True,
    }
    # An id CAP cannot carry was saved, and its CAP document was then a 400.
    response = session.post(f"{live.base_url}/api/v1/alerts", json=drill | {"id": "a b,<c>"})
    assert response.status_code == 400 and response.json()["error"]["field"] == "id"
    # Control characters in the text made our own CAP document unreadable XML.
    response = session.post(f"{live.base_url}/api/v1/alerts", json=drill)
    assert response.status_code == 201, response.text
    cap = session.get(f"{live.base_url}/api/v1/alerts/{response.json()['id']}/cap")
    assert cap.status_code == 200
    assert parse_cap(cap.content).infos[0].headline == "演练标题"
