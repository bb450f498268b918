"""The CLI as a user meets it: check-config, directory import with broken rows, stats, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import Cli

VILLAGES = """code,name,township,county,lat,lon
331099101201,东溪村,沙头镇,海屿县,28.61,121.40
331099101202,石桥村,沙头镇,海屿县,28.62,121.41
"""

# Chinese headers, a BOM, and five broken rows among good ones.
RESIDENTS = """\ufeff编号,姓名,手机,所在村,标签,包联干部
R1,王秀英,13800138000,331099101201,老人;独居,C1
R2,李建国,,331099101201,,
R3,张桂兰,12345,331099101202,老人,C1
R4,,13800138001,331099101201,,
R5,陈明,13800138002,331099101299,,
R6,刘芳,13800138003,3310991012,,
R1,王秀英重复,13800138004,331099101201,,
R7,赵磊,13800138005,331099101202,渔民,
"""

CONTACTS = """id,name,phone,villages,role
C1,周网格,13900139000,331099101201;331099101202,网格员
C2,吴镇长,13900139001,331099101,乡镇值班
"""


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def test_import_reports_each_broken_row_and_imports_the_rest(cli: Cli, tmp_path: Path) -> None:
    """Broken rows are listed as file:line: reason (exit 2); good rows land; re-import changes nothing."""
    files = [
        _write(tmp_path, "residents.csv", RESIDENTS),
        _write(tmp_path, "villages.csv", VILLAGES),
        _write(tmp_path, "contacts.csv", CONTACTS),
    ]
    result = cli.run("directory", "import", *map(str, files))
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if "residents.csv:" in line]
    lines = sorted(int(line.split(":")[1]) for line in errors)
    # R3's bad phone is a warning (imported without phone); R4 no name, R5 unknown village,
    # R6 short code, second R1 duplicate are errors.
    assert lines == [4, 5, 6, 7, 8], result.stderr
    assert "12345" in result.stderr

    stats = json.loads(cli.run("directory", "stats", "--json").stdout)
    assert stats["totals"]["residents"] == 4  # R1, R2, R3, R7
    assert stats["totals"]["vulnerable"] == 2  # R1 and R3 (老人 → elderly)
    assert stats["tags"]["渔民"] == 1  # bureau-defined tags are kept as written
    assert stats["contacts_by_role"]["cadre"] == 1 and stats["contacts_by_role"]["township_duty"] == 1

    again = cli.run("directory", "import", *map(str, files))
    assert again.returncode == 2  # the same broken rows are still broken
    assert json.loads(cli.run("directory", "stats", "--json").stdout)["totals"]["residents"] == 4


def test_bad_header_imports_nothing(embedded_cli: Cli, tmp_path: Path) -> None:
    """A file whose header has an unknown column is refused whole, naming the column."""
    villages = _write(tmp_path, "villages.csv", VILLAGES)
    assert embedded_cli.run("directory", "import", str(villages)).returncode == 0
    bad = _write(tmp_path, "bad.csv", "id,name,phnoe,village\nR1,王秀英,13800138000,331099101201\n")
    result = embedded_cli.run("directory", "import", str(bad))
    assert result.returncode == 2
    assert "phnoe" in result.stderr
    stats = json.loads(embedded_cli.run("directory", "stats", "--json").stdout)
    assert stats["totals"]["residents"] == 0


def test_stats_prints_townships_villages_and_tags(embedded_cli: Cli, tmp_path: Path) -> None:
    """The human stats view lists each township and village by name, with counts."""
    files = [
        _write(tmp_path, "villages.csv", VILLAGES),
        _write(tmp_path, "contacts.csv", CONTACTS),
        _write(tmp_path, "residents.csv", RESIDENTS),
    ]
    embedded_cli.run("directory", "import", *map(str, files))
    result = embedded_cli.run("directory", "stats")
    assert result.returncode == 0, result.stderr
    for text in ("沙头镇", "东溪村", "石桥村", "elderly", "331099101"):
        assert text in result.stdout


def test_check_config_redacts_and_rejects(embedded_cli: Cli, tmp_path: Path) -> None:
    """check-config prints the effective values with secrets hidden, and exits 2 on a bad file."""
    embedded_cli.env["WARNING_TWILIO_AUTH_TOKEN"] = "supersecret"
    result = embedded_cli.run("check-config")
    assert result.returncode == 0, result.stderr
    assert "supersecret" not in result.stdout and 'auth_token = "***"' in result.stdout
    assert "env WARNING_TWILIO_AUTH_TOKEN" in result.stdout

    bad = _write(tmp_path, "bad.toml", '[server]\npublic_url = "ftp://x"\n')
    result = embedded_cli.run("--config", str(bad), "check-config")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "server.public_url" in result.stderr


def test_english_interface(embedded_cli: Cli) -> None:
    """--lang en switches user-facing text to English."""
    embedded_cli.env["WARNING_SERVER_PORT"] = "not-a-port"
    result = embedded_cli.run("--lang", "en", "check-config")
    assert result.returncode == 2
    assert "invalid" in result.stderr and "error:" in result.stderr


def test_usage_error_exits_2() -> None:
    """An unknown command is a usage error with a one-line reason and exit code 2."""
    from warning.cli import main

    assert main(["frobnicate"]) == 2
