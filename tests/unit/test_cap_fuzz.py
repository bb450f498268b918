"""Property: no byte string makes the CAP parser raise anything but CapError (or hang)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CAP_SAMPLES
from tests.unit.test_cap import BASE, SAMPLES
from warning.cap import CapAlert, CapError, parse_cap

# No example database: the run leaves no .hypothesis folder in the work tree. About 10 s in all.
FUZZ = settings(max_examples=2000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Fragments that steer mutations towards the parser's edges: markup, entities, DTDs, namespaces, encodings.
FRAGMENTS = [
    b"<",
    b">",
    b"</",
    b"/>",
    b"<info>",
    b"</info>",
    b"<area><areaDesc>x</areaDesc></area>",
    b"<polygon>1,1 1,2 2,2 1,1</polygon>",
    b"<circle>1,1 -5</circle>",
    b"<references>a,b,c</references>",
    b"<x>",
    b"</alert>",
    b"&amp;",
    b"&lol;",
    b"&#0;",
    b"&#x110000;",
    b"<![CDATA[",
    b"]]>",
    b"<!--",
    b"-->",
    b"<?pi x?>",
    b'<!DOCTYPE alert [<!ENTITY a "b">]>',
    b'xmlns="urn:oasis:names:tc:emergency:cap:1.1"',
    b'xmlns:cap="urn:oasis:names:tc:emergency:cap:1.2"',
    b'<?xml version="1.0" encoding="latin-1"?>',
    b"\xef\xbb\xbf",
    b"\x00",
    b"\xff\xfe",
    b"Z",
    b"+08:00",
    b"NaN",
    b"1e999",
]


def corpus() -> list[bytes]:
    # Hypothesis tests cannot take the session fixture, so the seeds are read from the same folder.
    missing = [name for name in SAMPLES if not (CAP_SAMPLES / name).is_file()]
    if missing:
        pytest.fail(f"CAP samples missing from {CAP_SAMPLES}: {', '.join(missing)}", pytrace=False)
    return [BASE.encode(), *((CAP_SAMPLES / name).read_bytes() for name in SAMPLES)]


_CORPUS: list[bytes] = []


def seeds() -> list[bytes]:
    if not _CORPUS:
        _CORPUS.extend(corpus())
    return _CORPUS


def parse_or_refuse(data: bytes) -> None:
    try:
        result = parse_cap(data)
    except CapError as exc:
        assert exc.element and exc.rule
    else:
        assert isinstance(result, CapAlert) and result.raw == data


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_raise_only_cap_error(data: bytes) -> None:
    """Any byte string is parsed or refused with CapError, never another exception."""
    parse_or_refuse(data)


@FUZZ
@given(st.data())
def test_mutated_samples_raise_only_cap_error(data: st.DataObject) -> None:
    """Truncations, byte flips, inserted tags and cut-outs of real samples only ever raise CapError."""
    seed = data.draw(st.sampled_from(seeds()), label="seed")
    message = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        at = data.draw(st.integers(0, len(message)), label="at")
        kind = data.draw(st.sampled_from(["truncate", "flip", "insert", "delete", "duplicate"]), label="kind")
        if kind == "truncate":
            del message[at:]
        elif kind == "flip" and at < len(message):
            message[at] ^= data.draw(st.integers(1, 255), label="mask")
        elif kind == "insert":
            piece = data.draw(st.sampled_from(FRAGMENTS) | st.binary(max_size=16), label="piece")
            message[at:at] = piece
        elif kind == "delete":
            del message[at : at + data.draw(st.integers(1, 64), label="length")]
        elif kind == "duplicate":
            message[at:at] = message[at : at + data.draw(st.integers(1, 256), label="length")]
    parse_or_refuse(bytes(message))


TEXT_SLOTS = [
    "2026-08-01T08:00:00+08:00",
    "Actual",
    "Public",
    "Met",
    "Severe",
    "zh-CN",
    "30.0,120.0 30.0,121.0 31.0,121.0 30.0,120.0",
    "30.5,120.5 10",
    "1024",
    "</area>",
    "CN-330110-20260801-0001",
    "11B01",
]


@FUZZ
@given(st.sampled_from(TEXT_SLOTS), st.text(max_size=64))
def test_any_text_in_any_value_raises_only_cap_error(slot: str, text: str) -> None:
    """Replacing one element's text with arbitrary (escaped) text is parsed or refused with CapError."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;")
    if slot == "</area>":  # the area's optional numbers: altitude and ceiling
        escaped = f"<altitude>{escaped}</altitude><ceiling>{escaped}</ceiling></area>"
    try:
        encoded = BASE.replace(slot, escaped, 1).encode()
    except UnicodeEncodeError:  # lone surrogates cannot be sent at all
        return
    parse_or_refuse(encoded)


def test_fuzz_seeds_include_every_sample() -> None:
    """The mutation corpus really holds the base message and all 20 samples."""
    assert len(seeds()) == 1 + len(SAMPLES)
    assert all(isinstance(seed, bytes) and seed for seed in seeds())


def test_fuzz_seeds_come_from_the_in_repo_corpus(samples_dir: Path) -> None:
    """The fuzz seeds are read from the same in-repository folder the other CAP tests use."""
    assert samples_dir == CAP_SAMPLES
    assert seeds()[1:] == [(samples_dir / name).read_bytes() for name in SAMPLES]
