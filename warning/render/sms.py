"""SMS segment counting: GSM-7 (3GPP TS 23.038) or UCS-2, as carriers and Twilio bill them.

A text made only of the GSM-7 basic set and extension table is sent in septets (extension characters
take two: an escape and the character), 160 in one message or 153 per part of a concatenated one.
Anything else is sent in UCS-2: 70 UTF-16 code units alone, 67 per part (an emoji outside the BMP is
two). A part never splits an escape pair or a surrogate pair, so counting packs parts one character at
a time instead of dividing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

_SINGLE: dict[Encoding, int] = {"GSM-7": 160, "UCS-2": 70}
_PART: dict[Encoding, int] = {"GSM-7": 153, "UCS-2": 67}


@dataclass(frozen=True, slots=True)
class Segments:
    """How an SMS text is sent: `count` messages in `encoding`, `units` septets or UTF-16 code units."""

    count: int
    encoding: Encoding
    units: int


def _units(char: str, encoding: Encoding) -> int:
    if encoding == "GSM-7":
        return 2 if char in _GSM_EXTENSION else 1
    return 2 if ord(char) > 0xFFFF else 1


def sms_segments(text: str) -> Segments:
    """The number of SMS segments `text` needs, its encoding and its length in that encoding's units."""
    encoding: Encoding = "GSM-7" if all(c in _GSM_BASIC or c in _GSM_EXTENSION for c in text) else "UCS-2"
    sizes = [_units(c, encoding) for c in text]
    units = sum(sizes)
    if units <= _SINGLE[encoding]:
        return Segments(1, encoding, units)
    count, used = 1, 0
    for size in sizes:
        if used + size > _PART[encoding]:
            count, used = count + 1, 0
        used += size
    return Segments(count, encoding, units)


def capacity(encoding: Encoding, segments: int) -> int:
    """How many units fit in `segments` messages of `encoding`."""
    return _SINGLE[encoding] if segments == 1 else _PART[encoding] * segments
