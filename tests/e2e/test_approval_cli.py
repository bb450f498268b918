"""The host administrator's side of the two-person rule: `warning approve`, `warning return --reason` and
`warning reject --reason` on alerts an operator submitted through the API beside a running service."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tests.e2e.conftest import Cli


def _call(cli: Cli, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        cli.base_url + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_the_cli_approves_returns_and_rejects_what_operators_submit(cli: Cli) -> None:
    """A red Actual from the API waits (202); the CLI returns one with a reason, rejects one (a reason is
    required: exit 2 without), approves the third, which is issued; the moves name the CLI as admin."""
    serve = cli.start("serve", "--sample")
    cli.wait_healthy(serve)
    operator = cli.run("users", "add", "值班员小王", "--role", "operator").stdout.strip()
    body = {
        "event": "台风",
        "level": "red",
        "areas": ["331099101201"],
        "headline": "台风红色预警",
        "instruction": "请立即转移到村委会避灾点。",
        "audiences": ["vulnerable"],
    }
    submitted = []
    for _ in range(3):
        status, alert = _call(cli, "POST", "/api/v1/alerts", operator, body)
        assert status == 202 and alert["state"] == "pending_approval", alert
        submitted.append(alert["id"])
    returned, rejected, approved = submitted

    result = cli.run("return", returned, "--reason", "请补充避灾点地址")
    assert result.returncode == 0, result.stderr
    assert "请补充避灾点地址" in result.stdout
    missing = cli.run("reject", rejected)
    assert missing.returncode == 2 and "--reason" in missing.stderr
    blank = cli.run("reject", rejected, "--reason", " ")
    assert blank.returncode == 2, blank.stderr
    assert cli.run("reject", rejected, "--reason", "天气转好").returncode == 0
    result = cli.run("approve", approved)
    assert result.returncode == 0, result.stderr
    assert approved in result.stdout
    assert cli.run("approve", rejected).returncode == 2  # a rejected alert is never issued

    states = {}
    for alert_id in submitted:
        status, alert = _call(cli, "GET", f"/api/v1/alerts/{alert_id}", operator)
        states[alert_id] = alert["state"]
    assert states == {returned: "draft", rejected: "rejected", approved: "issued"}
    status, moves = _call(cli, "GET", f"/api/v1/alerts/{approved}/moves", operator)
    assert [(m["action"], m["actor"], m["role"]) for m in moves["moves"]] == [
        ("submit", "值班员小王", "operator"),
        ("approve", "cli", "admin"),
    ]
    assert cli.stop(serve) == 0
