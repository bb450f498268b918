"""Issuing as an operator does: the CLI beside a running service, and the JSON API with tokens and roles."""

from __future__ import annotations

import csv
import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import warning.sample
from tests.e2e.conftest import Cli


def _post(cli: Cli, path: str, body: Any, token: str | None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        cli.base_url + path, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _status(cli: Cli, alert_id: str) -> dict[str, Any]:
    result = cli.run("status", alert_id, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_issue_wait_status_cancel_through_the_cli(cli: Cli) -> None:
    """`warning issue --wait` beside `warning serve` sends, receipts arrive signed, `status` and `cancel` work."""
    serve = cli.start("serve", "--sample")
    cli.wait_healthy(serve)
    result = cli.run(
        "issue",
        "--yes",
        "--event",
        "台风",
        "--level",
        "橙色",
        "--area",
        "331099101201",
        "--headline",
        "台风今夜登陆",
        "--instruction",
        "请转移到安全地带。",
        "--exercise",
        "--wait",
    )
    assert result.returncode == 0, result.stderr
    alert_id = result.stdout.strip().splitlines()[0]
    assert "短信" in result.stdout

    deadline = time.monotonic() + 20
    while True:  # the sandbox's signed receipts come back through /hooks/twilio/status
        sms = _status(cli, alert_id)["deliveries"]["sms"]
        if sms.get("delivered", 0) > 0 and sms.get("sent", 0) == 0:
            break
        assert time.monotonic() < deadline, sms
        time.sleep(0.3)
    assert sms.get("queued", 0) == 0

    again = cli.run(
        "issue",
        "--yes",
        "--event",
        "台风",
        "--level",
        "orange",
        "--area",
        "331099101201",
        "--headline",
        "台风今夜登陆",
        "--instruction",
        "请转移到安全地带。",
        "--id",
        alert_id,
    )
    assert again.returncode == 0, again.stderr
    assert _status(cli, alert_id)["deliveries"]["sms"] == sms, "re-issuing sent nothing new"

    cancelled = cli.run("cancel", alert_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert _status(cli, alert_id)["alert"]["state"] == "cancelled"
    assert cli.run("cancel", "W-does-not-exist").returncode == 2
    assert cli.stop(serve) == 0


def test_api_tokens_roles_and_errors(cli: Cli) -> None:
    """POST /api/v1/alerts needs a token with the right role, names unknown fields, and answers 201."""
    serve = cli.start("serve", "--sample")
    cli.wait_healthy(serve)
    operator = cli.run("users", "add", "值班员小王", "--role", "operator").stdout.strip()
    viewer = cli.run("users", "add", "观察员", "--role", "viewer").stdout.strip()
    body = {
        "event": "暴雨",
        "level": "yellow",
        "areas": ["331099102"],
        "headline": "暴雨黄色预警",
        "instruction": "注意防范山洪。",
        "exercise": True,
    }

    assert _post(cli, "/api/v1/alerts", body, None)[0] == 401
    assert _post(cli, "/api/v1/alerts", body, "wt_wrong")[0] == 401
    assert _post(cli, "/api/v1/alerts", body, viewer)[0] == 403
    status, error = _post(cli, "/api/v1/alerts", body | {"description": "雨" * 400_000}, operator)
    assert status == 413 and error["error"]["code"] == "too_large"
    status, error = _post(cli, "/api/v1/alerts", body | {"severity": "x"}, operator)
    assert status == 400 and error["error"]["field"] == "severity"
    status, error = _post(cli, "/api/v1/alerts", body | {"areas": ["999999"]}, operator)
    assert status == 400 and "999999" in error["error"]["message"]

    status, alert = _post(cli, "/api/v1/alerts", body, operator)
    assert status == 201, alert
    assert alert["state"] == "issued" and alert["exercise"] is True
    request = urllib.request.Request(
        f"{cli.base_url}/api/v1/alerts/{alert['id']}", headers={"Authorization": f"Bearer {viewer}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        shown = json.loads(response.read())
    assert shown["id"] == alert["id"]
    status, cancelled = _post(cli, f"/api/v1/alerts/{alert['id']}/cancel", {}, operator)
    assert status == 200 and cancelled["state"] == "cancelled"
    assert _post(cli, "/api/v1/alerts/nope/cancel", {}, operator)[0] == 404
    assert cli.stop(serve) == 0


def test_mosquitto_sub_sees_exactly_one_play_per_speaker(cli: Cli) -> None:
    """A real MQTT client watching the command topics sees one `play` per loudspeaker in the area, none outside."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    cli.env["WARNING_MQTT_TOPIC_PREFIX"] = prefix
    serve = cli.start("serve", "--sample")
    cli.wait_healthy(serve)
    if "WARNING_MQTT_URL" in cli.env:
        host, port = cli.env["WARNING_MQTT_URL"].removeprefix("mqtt://").split(":")
    else:
        host, port = "127.0.0.1", cli.env["WARNING_MQTT_EMBEDDED_PORT"]
    area = "331099101"
    speakers = [
        row["device_id"]
        for row in csv.DictReader(
            (Path(warning.sample.__file__).parent / "data" / "speakers.csv").open(encoding="utf-8")
        )
        if row["village"].startswith(area)
    ]
    watcher = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            host,
            "-p",
            port,
            "-q",
            "1",
            "-v",
            "-t",
            f"{prefix}/speakers/+/cmd",
            "-W",
            "30",
            "-C",
            str(len(speakers)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)  # let mosquitto_sub subscribe before the warning goes out
    result = cli.run(
        "issue",
        "--yes",
        "--event",
        "台风",
        "--level",
        "red",
        "--area",
        area,
        "--headline",
        "台风今夜登陆",
        "--instruction",
        "请立即转移到安全地带。",
        "--audiences",
        "speakers",
        "--wait",
    )
    assert result.returncode == 0, result.stderr
    out, err = watcher.communicate(timeout=40)
    lines = [line for line in out.splitlines() if line.strip()]
    seen = Counter(line.split(" ", 1)[0].split("/")[-2] for line in lines)
    assert dict(seen) == dict.fromkeys(speakers, 1), (out, err)
    for line in lines:
        command = json.loads(line.split(" ", 1)[1])
        assert command["action"] == "play" and command["v"] == 1 and command["level"] == "red"
    time.sleep(1.0)
    extra = subprocess.run(
        ["mosquitto_sub", "-h", host, "-p", port, "-t", f"{prefix}/speakers/+/cmd", "-W", "1", "-v"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert extra.stdout.strip() == "", "commands are not retained and nothing else was sent"
    assert cli.stop(serve) == 0


def test_demo_runs_a_complete_drill(embedded_cli: Cli) -> None:
    """`warning demo` loads the sample county, sends the drill, prints the reach report and exits 0."""
    result = embedded_cli.run("demo", timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "送达报告" in result.stdout
    assert "短信" in result.stdout and "大喇叭" in result.stdout
    assert "均带【演练】标记：True" in result.stdout
    # The call-and-answer part: simulated cadres confirm over the signed pages, the ladder runs, and at
    # the end every must-reach resident is confirmed or on a named person's escalation list.
    assert "叫应汇总" in result.stdout and "必达人员" in result.stdout
    assert "（已确认，或在具名责任人的升级名单上）：是" in result.stdout
    assert "被拒 0" in result.stdout


def test_speaker_sim_plays_what_serve_sends(embedded_cli: Cli) -> None:
    """`warning speaker-sim` beside `warning serve` connects the county's loudspeakers and plays the warning."""
    serve = embedded_cli.start("serve", "--sample")
    embedded_cli.wait_healthy(serve)
    sim = embedded_cli.start("speaker-sim", "--village", "331099101201")
    deadline = time.monotonic() + 30
    while True:  # the simulator says how many loudspeakers it connected
        line = sim.stdout.readline() if sim.stdout else ""
        if "2" in line and ("模拟大喇叭" in line or "simulated" in line):
            break
        assert sim.poll() is None and time.monotonic() < deadline, line
    result = embedded_cli.run(
        "issue",
        "--yes",
        "--event",
        "山洪",
        "--level",
        "yellow",
        "--area",
        "331099101201",
        "--headline",
        "山洪可能暴发",
        "--instruction",
        "请沿河群众立即转移到高处。",
        "--audiences",
        "speakers",
        "--wait",
    )
    assert result.returncode == 0, result.stderr
    alert_id = result.stdout.strip().splitlines()[0]
    deadline = time.monotonic() + 20
    while (speaker := _status(embedded_cli, alert_id)["deliveries"]["speaker"]) != {"delivered": 2}:
        # Sent at PUBACK; delivered once each loudspeaker reports it played the warning.
        assert set(speaker) <= {"sent", "delivered"} and time.monotonic() < deadline, speaker
        time.sleep(0.2)
    assert embedded_cli.stop(sim) == 0
    assert embedded_cli.stop(serve) == 0


def test_cap_in_and_out_over_http(embedded_cli: Cli) -> None:
    """POST CAP XML issues an alert; its CAP and the public Atom feed are served without a token."""
    from datetime import UTC, datetime, timedelta

    from warning.cap.emit import emit_cap
    from warning.model import Alert, Level

    serve = embedded_cli.start("serve", "--sample")
    embedded_cli.wait_healthy(serve)
    token = embedded_cli.run("users", "add", "feed", "--role", "operator").stdout.strip()
    document = emit_cap(
        Alert(
            "CMA-HTTP-1",
            "cma@example.cn",
            datetime.now(UTC),
            "暴雨",
            Level.YELLOW,
            ("331099102201",),
            headline="暴雨黄色预警",
            instruction="注意防范。",
            expires=datetime.now(UTC) + timedelta(hours=2),
        ),
        sender="cma@example.cn",
        sender_name="气象台",
        villages=[],
    )
    request = urllib.request.Request(
        embedded_cli.base_url + "/api/v1/alerts",
        data=document,
        method="POST",
        headers={"Content-Type": "application/cap+xml", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        created = json.loads(response.read())
        assert response.status == 201
    assert (
        created["id"] == "CMA-HTTP-1" and created["cap_action"] == "issued" and created["level"] == "yellow"
    )
    status, cap = embedded_cli.get("/api/v1/alerts/CMA-HTTP-1/cap")
    assert status == 200 and "<identifier>CMA-HTTP-1</identifier>" in cap and "zh-CN" in cap
    status, feed = embedded_cli.get("/feeds/alerts.atom")
    assert status == 200 and "/api/v1/alerts/CMA-HTTP-1/cap" in feed and "application/cap+xml" in feed
    bad = urllib.request.Request(
        embedded_cli.base_url + "/api/v1/alerts",
        data=b"<alert>nope</alert>",
        method="POST",
        headers={"Content-Type": "application/cap+xml", "Authorization": f"Bearer {token}"},
    )
    try:
        urllib.request.urlopen(bad, timeout=10)
        raise AssertionError("invalid CAP was accepted")
    except urllib.error.HTTPError as exc:
        assert exc.code == 400 and json.loads(exc.read())["error"]["code"] == "invalid_cap"
    assert embedded_cli.stop(serve) == 0


def test_status_and_report_show_who_was_reached(cli: Cli) -> None:
    """`warning status` shows reach per village and who answers for the open ones; `warning report` writes
    the after-action report as JSON, CSV and XLSX with the same figures."""
    from openpyxl import load_workbook

    serve = cli.start("serve", "--sample")
    cli.wait_healthy(serve)
    village = "331099101202"
    result = cli.run(
        "issue",
        "--yes",
        "--event",
        "台风",
        "--level",
        "red",
        "--area",
        village,
        "--headline",
        "台风今夜登陆",
        "--instruction",
        "请立即转移到村委会避灾点。",
        "--audiences",
        "vulnerable",
        "--exercise",
        "--wait",
    )
    assert result.returncode == 0, result.stderr
    alert_id = result.stdout.strip().splitlines()[0]
    sample = Path(warning.sample.__file__).parent / "data" / "residents.csv"
    with sample.open(encoding="utf-8") as fh:
        vulnerable = [
            r
            for r in csv.DictReader(fh)
            if r["village"] == village
            and {"elderly", "lives_alone", "no_smartphone", "disabled"} & set(r["tags"].split(";"))
        ]
    status = cli.run("status", alert_id)
    assert status.returncode == 0, status.stderr
    assert f"必达人员 {len(vulnerable)} 人" in status.stdout and village in status.stdout
    report = cli.run("report", alert_id, "--format", "json", "--out", "-")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["must_reach"]["total"] == len(vulnerable)
    assert data["timings"]["seconds_to_first_message"] is not None
    assert {v["code"] for v in data["villages"] if v["must_reach_total"]} == {village}
    for fmt in ("csv", "xlsx"):
        written = cli.run("report", alert_id, "--format", fmt)
        assert written.returncode == 0, written.stderr
        assert (cli.cwd / f"report-{alert_id}.{fmt}").stat().st_size > 0
    book = load_workbook(cli.cwd / f"report-{alert_id}.xlsx")
    summary = {row[0]: row[1] for row in book["概况"].iter_rows(values_only=True)}
    assert summary["必达人员总数"] == len(vulnerable) and summary["级别"] == "红色"
    assert cli.run("report", "W-does-not-exist").returncode == 2
    assert cli.stop(serve) == 0
