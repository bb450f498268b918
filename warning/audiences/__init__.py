"""Audiences: named rules over residents, contacts and loudspeakers, and the channels each one uses.

Built-ins (DESIGN §4): `vulnerable` (must-reach), `public`, `cadres`, `officials`, `rescue_teams`,
`speakers`; bureaus add more with `[[audiences]]` in the config. Order matters: a person in two
audiences of one alert gets one message per channel, from the first audience listed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from warning.config import AudienceSettings
from warning.errors import UsageError
from warning.i18n import t
from warning.model import VULNERABLE_TAGS, Role


class Members(enum.StrEnum):
    RESIDENTS = "residents"
    CONTACTS = "contacts"
    SPEAKERS = "speakers"


@dataclass(frozen=True, slots=True)
class Audience:
    name: str
    members: Members
    channels: tuple[str, ...]
    any_tags: frozenset[str] = frozenset()  # residents: carrying any of these; empty = everyone
    roles: frozenset[Role] = frozenset()  # contacts: with one of these roles
    must_reach: bool = False  # every member must be confirmed (cadre tasks, escalation)


# Residents without a smartphone are called (voice, press 1); everyone with WeChat also gets a push;
# cadres and officials get SMS plus a WeCom app message.
BUILTINS: dict[str, Audience] = {
    a.name: a
    for a in (
        Audience(
            "vulnerable", Members.RESIDENTS, ("sms", "voice"), any_tags=VULNERABLE_TAGS, must_reach=True
        ),
        Audience("public", Members.RESIDENTS, ("sms", "wechat")),
        Audience(
            "cadres", Members.CONTACTS, ("sms", "wecom"), roles=frozenset({Role.CADRE, Role.VILLAGE_HEAD})
        ),
        Audience(
            "officials",
            Members.CONTACTS,
            ("sms", "wecom"),
            roles=frozenset({Role.TOWNSHIP_DUTY, Role.COUNTY_DUTY}),
        ),
        Audience("rescue_teams", Members.CONTACTS, ("sms",), roles=frozenset({Role.RESCUE_TEAM})),
        Audience("speakers", Members.SPEAKERS, ("speaker",)),
    )
}

DEFAULT_AUDIENCES: tuple[str, ...] = ("vulnerable", "public", "cadres", "officials", "speakers")


def catalogue(extras: Iterable[AudienceSettings]) -> dict[str, Audience]:
    """Built-ins plus the bureau's audiences from config (a config audience may not reuse a built-in name).

    Raises:
        UsageError: an extra audience reuses a built-in name or names an unknown role.
    """
    audiences = dict(BUILTINS)
    for extra in extras:
        if extra.name in audiences:
            raise UsageError(
                t("受众 {n} 与内置受众重名", "audience {n} clashes with a built-in one", n=extra.name)
            )
        try:
            roles = frozenset(Role(r) for r in extra.roles)
        except ValueError:
            raise UsageError(
                t(
                    "受众 {n} 的角色无效：{r}；可用：{ok}",
                    "audience {n} has an unknown role in {r}; use {ok}",
                    n=extra.name,
                    r=", ".join(extra.roles),
                    ok=", ".join(r.value for r in Role),
                )
            ) from None
        members = Members.CONTACTS if roles else Members.RESIDENTS
        audiences[extra.name] = Audience(
            extra.name, members, extra.channels, frozenset(extra.tags), roles, extra.must_reach
        )
    return audiences


def select(names: Sequence[str], available: dict[str, Audience]) -> list[Audience]:
    """The audiences named, in order, without repeats.

    Raises:
        UsageError: a name is not a known audience.
    """
    chosen: list[Audience] = []
    for name in names:
        if name not in available:
            raise UsageError(
                t(
                    "未知的受众 {n}；可用：{ok}",
                    "unknown audience {n}; known: {ok}",
                    n=name,
                    ok=", ".join(available),
                )
            )
        if available[name] not in chosen:
            chosen.append(available[name])
    return chosen
