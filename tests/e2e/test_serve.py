"""`warning serve` as a user runs it: probes, metrics, clean stop, restart, and SIGKILL survival."""

from __future__ import annotations

import json
import signal
import socket
import time

from tests.e2e.conftest import Cli

SAMPLE_RESIDENTS_MIN = 2000


def _residents(cli: Cli) -> int:
    result = cli.run("directory", "stats", "--json")
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["totals"]["residents"])


def test_serve_probes_stop_and_restart(cli: Cli) -> None:
    """serve --sample answers /healthz and /readyz, stops cleanly on SIGTERM, and restarts with its data."""
    process = cli.start("serve", "--sample")
    cli.wait_healthy(process)
    status, ready = cli.get_json("/readyz")
    assert status == 200, ready
    assert ready["checks"]["redis"]["ok"] and ready["checks"]["mqtt"]["ok"]
    for _ in range(50):  # the loudspeaker channel connects to the broker a moment after start
        if ready["status"] == "ready":
            break
        time.sleep(0.1)
        ready = cli.get_json("/readyz")[1]
    assert ready["status"] == "ready", ready
    assert ready["checks"]["channel:sms"]["ok"] and ready["checks"]["channel:speaker"]["ok"]
    status, metrics = cli.get("/metrics")
    assert status == 200
    residents_line = next(
        line
        for line in metrics.splitlines()
        if line.startswith('warning_directory_records{kind="residents"}')
    )
    loaded = int(float(residents_line.split()[-1]))
    assert loaded >= SAMPLE_RESIDENTS_MIN
    assert 'warning_http_requests_total{method="GET",route="/readyz",status="200"}' in metrics

    assert cli.stop(process, signal.SIGTERM) == 0
    output = process.stdout.read() if process.stdout else ""
    assert "warning 已启动" in output

    restarted = cli.start("serve")  # no --sample: the directory must come back from storage
    cli.wait_healthy(restarted)
    assert cli.get_json("/readyz")[0] == 200
    assert cli.stop(restarted, signal.SIGINT) == 0
    assert _residents(cli) == loaded


def test_sigkill_loses_no_imported_data(cli: Cli) -> None:
    """Killing serve with SIGKILL right after the import and restarting it finds every resident."""
    process = cli.start("serve", "--sample")
    cli.wait_healthy(process)
    _, metrics = cli.get("/metrics")
    loaded = int(
        float(
            next(
                line
                for line in metrics.splitlines()
                if line.startswith('warning_directory_records{kind="residents"}')
            ).split()[-1]
        )
    )
    process.kill()
    process.wait(10)

    restarted = cli.start("serve")
    cli.wait_healthy(restarted)
    assert cli.get_json("/readyz")[0] == 200
    assert cli.stop(restarted) == 0
    assert _residents(cli) == loaded


def test_sample_is_not_loaded_twice(embedded_cli: Cli) -> None:
    """--sample loads only into an empty directory, so a restart never doubles or resets the county."""
    first = embedded_cli.start("serve", "--sample")
    embedded_cli.wait_healthy(first)
    assert embedded_cli.stop(first) == 0
    before = _residents(embedded_cli)
    second = embedded_cli.start("serve", "--sample")
    embedded_cli.wait_healthy(second)
    assert embedded_cli.stop(second) == 0
    assert _residents(embedded_cli) == before


def test_volatile_redis_refused_at_start(cli: Cli) -> None:
    """On the real (volatile) CI Redis without allow_volatile, serve exits 2 with the fix in one line."""
    if "WARNING_REDIS_URL" not in cli.env:
        cli.env["WARNING_REDIS_URL"] = "redis://127.0.0.1:1/0"  # embedded run: an unreachable Redis instead
        expected_code, expected_text = 1, "WARNING_REDIS_URL"
    else:
        cli.env.pop("WARNING_REDIS_ALLOW_VOLATILE")
        expected_code, expected_text = 2, "allow_volatile"
    result = cli.run("serve")
    assert result.returncode == expected_code, result.stderr
    assert expected_text in result.stderr
    assert "Traceback" not in result.stderr


def test_provider_down_is_degraded_not_unready(embedded_cli: Cli) -> None:
    """A Twilio account nobody answers for leaves /readyz at 200 "degraded": warnings are still accepted."""
    embedded_cli.env.update(
        WARNING_TWILIO_ACCOUNT_SID="AC" + "0" * 32,
        WARNING_TWILIO_AUTH_TOKEN="x" * 32,
        WARNING_TWILIO_FROM="+15005550006",
        WARNING_TWILIO_BASE_URL="http://127.0.0.1:9",
    )
    serve = embedded_cli.start("serve", "--sample")
    embedded_cli.wait_healthy(serve)
    status, ready = embedded_cli.get_json("/readyz")
    assert status == 200 and ready["status"] == "degraded", ready
    assert not ready["checks"]["channel:sms"]["ok"]
    assert embedded_cli.stop(serve) == 0


def test_a_taken_port_is_a_clear_error_before_anything_starts(embedded_cli: Cli) -> None:
    """The service binds its address first: a taken port is exit 2 with a one-line reason, and nothing
    (no embedded Redis, no sandbox) was started for it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = embedded_cli.run("serve", "--port", str(port), timeout=60)
    assert result.returncode == 2, result.stderr
    assert "无法监听" in result.stderr and str(port) in result.stderr
    assert not (embedded_cli.cwd / "var" / "redis").exists()
