"""Phone numbers: normalisation to E.164 and masking for logs."""

from __future__ import annotations

import re

DEFAULT_REGION = "CN"

# China has no official fictional mobile range. Synthetic directories (the sample county, the
# generator) use the +86 1740 block, allocated to satellite terminals, which no resident in a
# village list uses, so generated data never collides with a real resident's number.
SYNTHETIC_PREFIX = "+861740"


class InvalidPhone(ValueError):
    """The text is not a valid phone number for the region."""


def normalize(raw: str, region: str = DEFAULT_REGION) -> str:
    """Return `raw` in E.164 form (`+8613800138000`), reading national numbers in `region`.

    Raises:
        InvalidPhone: the text is not a valid number.
    """
    # Imported here, not at the top: every command's logging masks numbers with this module, and only the
    # importers and the API parse them (phonenumbers' metadata is a fifth of `warning status`'s start-up).
    import phonenumbers

    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(raw) from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(raw)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask(number: str) -> str:
    """`+8613800138000` → `+86138****8000`: enough to tell numbers apart in logs, not to dial them."""
    head = 6 if number.startswith("+") else 3
    if len(number) <= head + 4:
        return "*" * len(number)
    return number[:head] + "*" * (len(number) - head - 4) + number[-4:]


# What phone numbers look like in free text: E.164 (+8613800138000), Chinese mobiles (13800138000)
# and landlines with an area code (0571-88880000). 12-digit village codes and timestamps stay readable.
_PHONE_LIKE = re.compile(r"\+\d{7,15}|(?<!\d)1[3-9]\d{9}(?!\d)|(?<!\d)0\d{2,3}-?\d{7,8}(?!\d)")


def mask_text(text: str) -> str:
    """Mask every phone-number-like run in free text (log messages, exception texts)."""
    return _PHONE_LIKE.sub(lambda m: mask(m.group(0)), text)
