"""Settings: file + environment, types, unknown keys, secrets, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from warning.config import (
    effective,
    language_hint,
    load_settings,
    parse_duration,
    redact_url,
    user_data_dir,
)
from warning.errors import ConfigError
from warning.i18n import set_language


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "warning.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_mean_embedded_servers_and_zh_cn(tmp_path: Path) -> None:
    """With no file and no environment, Redis and MQTT are embedded and the interface is zh-CN."""
    settings = load_settings(None, {})
    assert settings.redis.url == "" and settings.mqtt.url == ""
    assert settings.ui.language == "zh-CN"
    assert settings.data.dir == user_data_dir({}), "the per-user folder, never the current directory"
    assert settings.server.base_url == "http://127.0.0.1:8080"
    assert settings.origin["redis.url"] == "default"


def test_environment_overrides_file(tmp_path: Path) -> None:
    """`WARNING_SECTION_KEY` wins over the file, and each value records where it came from."""
    path = write(tmp_path, '[server]\nport = 9000\nhost = "0.0.0.0"\n[redis]\nurl = "redis://h:6379/1"\n')
    settings = load_settings(path, {"WARNING_SERVER_PORT": "9100", "WARNING_DATA_DIR": "/srv/w"})
    assert settings.server.port == 9100
    assert settings.server.host == "0.0.0.0"
    assert settings.redis.url == "redis://h:6379/1"
    assert settings.data.dir == Path("/srv/w")
    assert settings.origin["server.port"] == "env WARNING_SERVER_PORT"
    assert settings.origin["server.host"] == str(path)


def test_config_path_from_environment(tmp_path: Path) -> None:
    """`WARNING_CONFIG` names the file when no path is given."""
    path = write(tmp_path, '[mqtt]\ntopic_prefix = "county"\n')
    assert load_settings(None, {"WARNING_CONFIG": str(path)}).mqtt.topic_prefix == "county"


def test_twilio_from_is_read_under_its_toml_name(tmp_path: Path) -> None:
    """`twilio.from` (a Python keyword) is accepted in the file and as WARNING_TWILIO_FROM."""
    path = write(tmp_path, '[twilio]\nfrom = "+15005550006"\n')
    assert load_settings(path, {}).twilio.from_number == "+15005550006"
    assert load_settings(None, {"WARNING_TWILIO_FROM": "+15005550001"}).twilio.from_number == "+15005550001"


@pytest.mark.parametrize(
    ("text", "env", "fragment"),
    [
        ('[redis]\nulr = "redis://x"\n', {}, "redis.ulr"),
        ('[rediss]\nurl = "redis://x"\n', {}, "[rediss]"),
        ('[server]\nport = "eighty"\n', {}, "server.port"),
        ("[server]\nport = 70000\n", {}, "server.port"),
        ('[redis]\nallow_volatile = "maybe"\n', {}, "redis.allow_volatile"),
        ('[log]\nformat = "xml"\n', {}, "log.format"),
        ('[redis]\nurl = "http://localhost"\n', {}, "redis.url"),
        ("[server\nport = 1\n", {}, "TOML"),
        ("", {"WARNING_REDIS_ULR": "redis://x"}, "WARNING_REDIS_ULR"),
        ("", {"WARNING_SERVER_PORT": "x"}, "WARNING_SERVER_PORT"),
    ],
)
def test_bad_input_names_what_to_fix(tmp_path: Path, text: str, env: dict[str, str], fragment: str) -> None:
    """Each bad key or value raises ConfigError naming the key (or variable) at fault."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env)
    assert fragment in str(caught.value)


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    """A misspelt key comes with a did-you-mean."""
    set_language("en")
    try:
        with pytest.raises(ConfigError, match="did you mean url"):
            load_settings(write(tmp_path, '[redis]\nulr = "redis://x"\n'), {})
    finally:
        set_language("zh-CN")


def test_secret_in_file_is_refused(tmp_path: Path) -> None:
    """Secrets come only from the environment: a token in the file is an error naming the variable."""
    with pytest.raises(ConfigError, match="WARNING_TWILIO_AUTH_TOKEN"):
        load_settings(write(tmp_path, '[twilio]\nauth_token = "abc"\n'), {})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """An explicitly named file that does not exist is reported, not silently ignored."""
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_settings(tmp_path / "nope.toml", {})


def test_effective_redacts_secrets_and_url_passwords() -> None:
    """check-config output never shows a secret or a password inside a URL."""
    settings = load_settings(
        None,
        {
            "WARNING_TWILIO_AUTH_TOKEN": "tok123",
            "WARNING_REDIS_URL": "redis://:pw999@db:6379/0",
            "WARNING_WECHAT_SECRET": "sec456",
        },
    )
    printed = repr(effective(settings))
    assert "tok123" not in printed and "pw999" not in printed and "sec456" not in printed
    assert "redis://:***@db:6379/0" in printed


def test_redact_url_leaves_passwordless_urls_alone() -> None:
    """A URL without a password prints unchanged."""
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("mqtt://dev:pw@broker:1883") == "mqtt://dev:***@broker:1883"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("250ms", 0.25), (" 1.5h ", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    """Durations in the file read as seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["15", "m", "15 minutes", "-5s", ""])
def test_bad_durations(text: str) -> None:
    """Anything but a number with a unit is not a duration."""
    with pytest.raises(ValueError):
        parse_duration(text)


def test_language_hint_reads_the_environment() -> None:
    """The interface language can be chosen before the full settings are read."""
    assert language_hint({"WARNING_UI_LANGUAGE": "en"}) == "en"
    assert language_hint({}) == "zh-CN"


def test_shipped_example_config_is_valid() -> None:
    """The annotated example in config/ loads without error, so it cannot drift from the code."""
    example = Path(__file__).resolve().parents[2] / "config" / "warning.example.toml"
    settings = load_settings(example, {})
    assert settings.mqtt.embedded_port == 11883


def test_audiences_from_the_file(tmp_path: Path) -> None:
    """`[[audiences]]` tables become typed audience rules; a table without tags or roles is refused."""
    good = write(
        tmp_path,
        '[[audiences]]\nname = "fishermen"\ntags = ["fisherman"]\nchannels = ["sms"]\n'
        '[[audiences]]\nname = "teams"\nroles = ["rescue_team"]\nchannels = ["sms"]\n'
        "must_reach = true\n",
    )
    audiences = load_settings(good, {}).audiences
    assert [(a.name, a.tags, a.roles, a.must_reach) for a in audiences] == [
        ("fishermen", ("fisherman",), (), False),
        ("teams", (), ("rescue_team",), True),
    ]
    bad = write(tmp_path, '[[audiences]]\nname = "x"\nchannels = ["sms"]\n')
    with pytest.raises(ConfigError, match="tags"):
        load_settings(bad, {})


def test_data_dir_is_per_user_and_relative_to_the_config_file(tmp_path: Path) -> None:
    """The data folder is $XDG_DATA_HOME/warning or ~/.local/share/warning by default; a relative path in
    the file is taken from the file's folder, one in the environment from the current directory."""
    assert load_settings(None, {"HOME": "/home/ops"}).data.dir == Path("/home/ops/.local/share/warning")
    assert load_settings(None, {"HOME": "/h", "XDG_DATA_HOME": "/xdg"}).data.dir == Path("/xdg/warning")
    path = write(tmp_path, '[data]\ndir = "state"\n')
    assert load_settings(path, {}).data.dir == tmp_path / "state"
    assert load_settings(path, {"WARNING_DATA_DIR": "rel"}).data.dir == Path.cwd() / "rel"
    assert load_settings(None, {"HOME": "/home/ops", "WARNING_DATA_DIR": "~/w"}).data.dir == Path(
        "/home/ops/w"
    )


def test_config_file_is_never_taken_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config/warning.toml in the current folder is ignored; the per-user file is found from anywhere."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "warning.toml").write_text("[server]\nport = 9999\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    assert load_settings(None, {"HOME": str(home)}).server.port == 8080
    user_file = home / ".config" / "warning" / "warning.toml"
    user_file.parent.mkdir(parents=True)
    user_file.write_text("[server]\nport = 9100\n", encoding="utf-8")
    settings = load_settings(None, {"HOME": str(home)})
    assert settings.server.port == 9100 and settings.path == user_file
