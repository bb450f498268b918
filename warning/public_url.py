"""Whether `server.public_url` is an address people's phones can open (cadre and resident links).

Unset, it defaults to `http://host:port`, and a link to this machine's loopback or wildcard address
opens nothing on a phone. The service says so at start-up and in `warning check-config`, and an
Actual alert's messages then go out without links (drills keep them: a drill on a laptop opens
its links locally). Kept light: `check-config` imports it.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from warning.config import ServerSettings
from warning.i18n import t

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def local_only(url: str) -> bool:
    """True if `url` names this machine only: no host, loopback, 0.0.0.0/::, or a localhost name."""
    try:
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
    except ValueError:  # a malformed URL opens nothing either
        return True
    if not host or host in _LOCAL_NAMES or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a DNS name: whether phones resolve it is the operator's to know
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def public_url_problem(server: ServerSettings) -> str | None:
    """The start-up notice (zh-CN or English) when `server.public_url` is unset or local only; else None."""
    if server.public_url and not local_only(server.public_url):
        return None
    where = (
        t("指向本机（{u}）", "names this machine only ({u})", u=server.public_url)
        if server.public_url
        else t("未设置", "is unset")
    )
    return t(
        "注意：server.public_url {w}，手机打不开干部任务链接和居民确认链接。正式预警照常发送，但不附链接，"
        "改为请干部逐户上门、电话向值班员回报（演练照常附链接）。请把 WARNING_SERVER_PUBLIC_URL "
        "设为手机能访问的地址，如 https://warning.example.gov.cn。",
        "NOTE: server.public_url {w}: phones cannot open cadre and resident links. Actual alerts still go "
        "out, without links: cadres are told to go door to door and report to the duty officer by phone "
        "(drills keep the links). Set WARNING_SERVER_PUBLIC_URL to an address phones can reach, "
        "e.g. https://warning.example.gov.cn.",
        w=where,
    )
