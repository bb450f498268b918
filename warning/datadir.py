"""Where the service's data is, and refusing read commands cleanly when there is none there."""

from __future__ import annotations

from warning.config import Settings, redact_url
from warning.errors import UsageError
from warning.i18n import t


def store_location(settings: Settings) -> str:
    """The Redis the commands use, as a person would look for it."""
    if settings.redis.url:
        return redact_url(settings.redis.url)
    return t("内置 Redis，数据目录 {d}", "the embedded Redis, data folder {d}", d=settings.data.dir / "redis")


def require_data(settings: Settings) -> None:
    """A command that reads the service's data must not start an empty embedded Redis somewhere new.

    Raises:
        UsageError: embedded default and no data folder: says where it looked and how to point elsewhere.
    """
    if settings.redis.url or (settings.data.dir / "redis").is_dir():
        return
    origin = settings.origin.get("data.dir", "default")
    raise UsageError(
        t(
            "在 {d} 没有找到服务数据（数据目录来自：{o}）。服务用的是别的目录或 Redis？"
            "用 --config 文件、WARNING_DATA_DIR 或 WARNING_REDIS_URL 指定；新装的话先运行 warning serve --sample。",
            "no service data in {d} (data folder from: {o}). Does the service use another folder or Redis? "
            "Point at it with --config, WARNING_DATA_DIR or WARNING_REDIS_URL; on a new install run "
            "`warning serve --sample` first.",
            d=settings.data.dir,
            o=t("默认（每个用户一份）", "default (per user)") if origin == "default" else origin,
        )
    )
