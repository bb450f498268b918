"""Parsing CAP 1.2 XML bytes into a typed `CapAlert`, refusing hostile input before it costs anything.

XML is read by defusedxml's parser with DTDs, entities and external references forbidden, so nothing
is ever fetched or opened; size, nesting depth and element count are capped while parsing, so a
hostile document is refused as soon as it crosses a limit. The tree is then checked against the CAP
1.2 schema and prose rules (`warning.cap.validate`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

# No stubs ship for defusedxml; the ignore tolerates them being installed later.
from defusedxml import (  # type: ignore[import-untyped,unused-ignore]
    DefusedXmlException,
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
)
from defusedxml.ElementTree import DefusedXMLParser  # type: ignore[import-untyped,unused-ignore]

from warning.cap.document import (
    CAP12_NAMESPACE,
    CapAlert,
    CapArea,
    CapInfo,
    CapResource,
    Category,
    Certainty,
    MsgType,
    ResponseType,
    Scope,
    Severity,
    Urgency,
    ValueName,
)
from warning.cap.validate import (
    ALERT_CHILDREN,
    AREA_CHILDREN,
    INFO_CHILDREN,
    PAIR_CHILDREN,
    RESOURCE_CHILDREN,
    Occurs,
    cap_error,
    check_children,
    parse_circle,
    parse_datetime,
    parse_decimal,
    parse_enum,
    parse_language,
    parse_polygon,
    parse_references,
    parse_size,
    parse_token,
    show,
    split_list,
    validate,
)
from warning.model import AlertStatus

MAX_BYTES = 1 << 20  # 1 MiB, as for any request body (DESIGN §5.2)
MAX_DEPTH = 32  # CAP itself nests 5 deep; XML-DSig a few more
MAX_ELEMENTS = 10_000
XMLDSIG_NAMESPACE = "http://www.w3.org/2000/09/xmldsig#"
_OLD_VERSIONS = {
    "urn:oasis:names:tc:emergency:cap:1.1": "1.1",
    "http://www.incident.com/cap/1.0": "1.0",
}


class _BoundedTreeBuilder:
    """An ElementTree builder that refuses a document as soon as it nests too deep or grows too big."""

    def __init__(self) -> None:
        self._builder = TreeBuilder()
        self._depth = 0
        self._count = 0

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        self._depth += 1
        self._count += 1
        if self._depth > MAX_DEPTH:
            raise cap_error("alert", "depth-limit", limit=MAX_DEPTH)
        if self._count > MAX_ELEMENTS:
            raise cap_error("alert", "element-limit", limit=MAX_ELEMENTS)
        return self._builder.start(tag, attrs)

    def end(self, tag: str) -> Element:
        self._depth -= 1
        return self._builder.end(tag)

    def data(self, data: str) -> None:
        self._builder.data(data)

    def close(self) -> Element:
        return self._builder.close()


def _read_xml(data: bytes) -> Element:
    parser: Any = DefusedXMLParser(
        target=_BoundedTreeBuilder(), forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    try:
        parser.feed(data)
        root: Element = parser.close()
    except DTDForbidden:
        raise cap_error("alert", "dtd-forbidden") from None
    except EntitiesForbidden:
        raise cap_error("alert", "entities-forbidden") from None
    except ExternalReferenceForbidden:
        raise cap_error("alert", "external-reference") from None
    except (ParseError, DefusedXmlException, ValueError, LookupError) as exc:
        # ValueError covers undecodable bytes; LookupError an encoding Python does not know.
        raise cap_error("alert", "xml", detail=show(str(exc))) from None
    return root


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def _check_root(root: Element) -> None:
    namespace, local = _split(root.tag)
    if namespace in _OLD_VERSIONS:
        version = _OLD_VERSIONS[namespace]
        raise cap_error("alert", "cap-version", version=version, namespace=namespace)
    if namespace != CAP12_NAMESPACE:
        shown = show(namespace) if namespace else "(none)"
        raise cap_error("alert", "namespace", namespace=shown, expected=CAP12_NAMESPACE)
    if local != "alert":
        raise cap_error(local, "root", local=show(local))


def _check_no_text(element: Element, path: str) -> None:
    pieces = [element.text, *(child.tail for child in element)]
    if any(piece and piece.strip() for piece in pieces):
        raise cap_error(path, "unexpected-text")


class _Children:
    """The CAP children of one element, grouped by name and checked against the schema's table."""

    def __init__(self, element: Element, path: str, allowed: dict[str, Occurs]) -> None:
        _check_no_text(element, path)
        self.path = path
        self.signed = False
        self._allowed = allowed
        self._by_name: dict[str, list[Element]] = {}
        names = []
        for child in element:
            namespace, name = _split(child.tag)
            if namespace != CAP12_NAMESPACE:
                if path == "alert" and namespace == XMLDSIG_NAMESPACE and name == "Signature":
                    self.signed = True
                    continue
                shown = show(namespace) if namespace else "(none)"
                raise cap_error(f"{path}/{name}", "foreign-element", namespace=shown)
            names.append(name)
            self._by_name.setdefault(name, []).append(child)
        check_children(path, names, allowed)

    def elements(self, name: str) -> list[tuple[str, Element]]:
        """`(path, element)` for each child so named; a repeatable element's path carries its index."""
        found = self._by_name.get(name, [])
        if self._allowed[name][1] is None:
            return [(f"{self.path}/{name}[{i}]", child) for i, child in enumerate(found, 1)]
        return [(f"{self.path}/{name}", child) for child in found]

    def texts(self, name: str) -> list[tuple[str, str]]:
        return [(path, _simple_text(child, path)) for path, child in self.elements(name)]

    def text(self, name: str) -> str:
        """The text of an at-most-once element, `""` when absent."""
        found = self.texts(name)
        return found[0][1] if found else ""

    def path_of(self, name: str) -> str:
        return f"{self.path}/{name}"


def _simple_text(element: Element, path: str) -> str:
    if len(element):
        raise cap_error(path, "simple-content")
    return element.text or ""


def _pairs(children: _Children, name: str) -> tuple[ValueName, ...]:
    pairs = []
    for path, element in children.elements(name):
        pair = _Children(element, path, PAIR_CHILDREN)
        pairs.append(ValueName(pair.text("valueName").strip(), pair.text("value").strip()))
    return tuple(pairs)


def _area(element: Element, path: str) -> CapArea:
    kids = _Children(element, path, AREA_CHILDREN)
    altitude, ceiling = kids.text("altitude"), kids.text("ceiling")
    return CapArea(
        area_desc=kids.text("areaDesc").strip(),
        polygons=tuple(parse_polygon(text, p) for p, text in kids.texts("polygon")),
        circles=tuple(parse_circle(text, p) for p, text in kids.texts("circle")),
        geocodes=_pairs(kids, "geocode"),
        altitude=parse_decimal(altitude, kids.path_of("altitude")) if altitude.strip() else None,
        ceiling=parse_decimal(ceiling, kids.path_of("ceiling")) if ceiling.strip() else None,
    )


def _resource(element: Element, path: str) -> CapResource:
    kids = _Children(element, path, RESOURCE_CHILDREN)
    size = kids.text("size")
    return CapResource(
        resource_desc=kids.text("resourceDesc").strip(),
        mime_type=kids.text("mimeType").strip(),
        size=parse_size(size, kids.path_of("size")) if size.strip() else None,
        uri=kids.text("uri").strip(),
        deref_uri=kids.text("derefUri").strip(),
        digest=kids.text("digest").strip(),
    )


def _info(element: Element, path: str) -> CapInfo:
    kids = _Children(element, path, INFO_CHILDREN)

    def when(name: str) -> datetime | None:
        text = kids.text(name)
        return parse_datetime(text, kids.path_of(name)) if kids.elements(name) else None

    return CapInfo(
        language=parse_language(kids.text("language"), kids.path_of("language")),
        categories=tuple(parse_enum(Category, text, p) for p, text in kids.texts("category")),
        event=kids.text("event").strip(),
        response_types=tuple(parse_enum(ResponseType, text, p) for p, text in kids.texts("responseType")),
        urgency=parse_enum(Urgency, kids.text("urgency"), kids.path_of("urgency")),
        severity=parse_enum(Severity, kids.text("severity"), kids.path_of("severity")),
        certainty=parse_enum(Certainty, kids.text("certainty"), kids.path_of("certainty")),
        audience=kids.text("audience").strip(),
        event_codes=_pairs(kids, "eventCode"),
        effective=when("effective"),
        onset=when("onset"),
        expires=when("expires"),
        sender_name=kids.text("senderName").strip(),
        headline=kids.text("headline").strip(),
        description=kids.text("description").strip(),
        instruction=kids.text("instruction").strip(),
        web=kids.text("web").strip(),
        contact=kids.text("contact").strip(),
        parameters=_pairs(kids, "parameter"),
        resources=tuple(_resource(child, p) for p, child in kids.elements("resource")),
        areas=tuple(_area(child, p) for p, child in kids.elements("area")),
    )


def _alert(root: Element, raw: bytes) -> CapAlert:
    kids = _Children(root, "alert", ALERT_CHILDREN)
    references = kids.elements("references")
    return CapAlert(
        identifier=parse_token(kids.text("identifier"), "alert/identifier"),
        sender=parse_token(kids.text("sender"), "alert/sender"),
        sent=parse_datetime(kids.text("sent"), "alert/sent"),
        status=parse_enum(AlertStatus, kids.text("status"), "alert/status"),
        msg_type=parse_enum(MsgType, kids.text("msgType"), "alert/msgType"),
        scope=parse_enum(Scope, kids.text("scope"), "alert/scope"),
        source=kids.text("source").strip(),
        # An empty <restriction/> or <addresses/> says nothing, so it counts as absent.
        restriction=kids.text("restriction").strip(),
        addresses=split_list(kids.text("addresses")),
        codes=tuple(text.strip() for _, text in kids.texts("code")),
        note=kids.text("note").strip(),
        # A present but empty <references/> is an error, not an absence: it claims to refer to something.
        references=parse_references(kids.text("references"), "alert/references") if references else (),
        incidents=split_list(kids.text("incidents")),
        infos=tuple(_info(child, p) for p, child in kids.elements("info")),
        signed=kids.signed,
        raw=raw,
    )


def parse_cap(data: bytes) -> CapAlert:
    """Parse and validate one CAP 1.2 message; the result keeps `data` as `raw`.

    Accepts the default or a prefixed CAP 1.2 namespace, any encoding XML declares, and a BOM.

    Raises:
        CapError: the message is over 1 MiB, not well-formed XML, carries a DTD or entities, nests
            too deep or has too many elements, is not CAP 1.2 (CAP 1.1 and 1.0 are named as such),
            or breaks a schema or prose rule of CAP 1.2; `element` and `rule` say where and which.
    """
    if len(data) > MAX_BYTES:
        raise cap_error("alert", "size-limit", size=len(data))
    raw = bytes(data)
    root = _read_xml(raw)
    _check_root(root)
    alert = _alert(root, raw)
    validate(alert)
    return alert
