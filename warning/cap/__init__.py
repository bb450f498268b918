"""CAP 1.2 (Common Alerting Protocol): safe parsing and validation into typed, immutable documents.

parse_cap(data) -> CapAlert      bytes in; only `warning.errors.CapError` out
validate(alert)                  the cross-field CAP 1.2 rules, for any CapAlert
choose_info(alert)               the zh-CN block if any, else the first
"""

from __future__ import annotations

from warning.cap.document import (
    CAP12_NAMESPACE,
    DEFAULT_LANGUAGE,
    CapAlert,
    CapArea,
    CapInfo,
    CapResource,
    Category,
    Certainty,
    Circle,
    Geocode,
    MsgType,
    Polygon,
    Reference,
    ResponseType,
    Scope,
    Severity,
    Urgency,
    ValueName,
    choose_info,
)
from warning.cap.parse import MAX_BYTES, MAX_DEPTH, MAX_ELEMENTS, parse_cap
from warning.cap.validate import validate
from warning.errors import CapError

__all__ = [
    "CAP12_NAMESPACE",
    "DEFAULT_LANGUAGE",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "CapAlert",
    "CapArea",
    "CapError",
    "CapInfo",
    "CapResource",
    "Category",
    "Certainty",
    "Circle",
    "Geocode",
    "MsgType",
    "Polygon",
    "Reference",
    "ResponseType",
    "Scope",
    "Severity",
    "Urgency",
    "ValueName",
    "choose_info",
    "parse_cap",
    "validate",
]
