"""The CAP corpus is self-contained in the repository: unmodified bytes, provenance and a licence per file."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from tests.unit.test_cap import SAMPLES

REPO = Path(__file__).resolve().parents[2]
SCHEMA = "cap12.xsd"
# SPDX id (or the OASIS notice) → the licence text that must travel with the copies (None: the notice
# is inside the file itself).
LICENCE_TEXTS: dict[str, str | None] = {
    "Apache-2.0": "Apache-2.0.txt",
    "BSD-2-Clause": "BSD-2-Clause-tannerryan-cap.txt",
    "MPL-1.1": "MPL-1.1.txt",
    "OASIS copyright (see below)": None,
}
ROW = re.compile(r"^\| (?P<file>[^|]+?) \| (?P<source>[^|]+?) \| (?P<licence>[^|]+?) \|$", re.MULTILINE)


def licence_rows(samples_dir: Path) -> dict[str, tuple[str, str]]:
    text = (samples_dir / "LICENSES.md").read_text(encoding="utf-8")
    return {m["file"]: (m["source"], m["licence"]) for m in ROW.finditer(text) if m["file"] != "File"}


def test_every_file_has_one_licence_row_with_a_full_commit(samples_dir: Path) -> None:
    """LICENSES.md names each sample and the schema once, with its upstream repo, full commit and licence."""
    text = (samples_dir / "LICENSES.md").read_text(encoding="utf-8")
    assert sorted(m["file"] for m in ROW.finditer(text) if m["file"] != "File") == sorted([*SAMPLES, SCHEMA])
    rows = licence_rows(samples_dir)
    for name, (source, licence) in rows.items():
        assert licence in LICENCE_TEXTS, f"{name}: unknown licence {licence!r}"
        if name != SCHEMA:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+ @ [0-9a-f]{40} : \S+", source), f"{name}: {source!r}"


def test_each_licence_text_that_must_travel_is_in_the_folder(samples_dir: Path) -> None:
    """Every licence a sample is under has its text in licenses/ (BSD's with the upstream copyright line)."""
    used = {licence for _, licence in licence_rows(samples_dir).values()}
    texts = [LICENCE_TEXTS[licence] for licence in used]
    assert [
        t for t in texts if t and not (samples_dir / "licenses" / t).read_text(encoding="utf-8").strip()
    ] == []
    bsd = (samples_dir / "licenses" / "BSD-2-Clause-tannerryan-cap.txt").read_text(encoding="utf-8")
    assert bsd.startswith("Copyright (c) 2019 Tanner Ryan.") and "Redistributions in binary form" in bsd
    assert (samples_dir / SCHEMA).read_text(encoding="utf-8").splitlines()[1] == (
        "<!-- Copyright OASIS Open 2010 All Rights Reserved -->"
    )


def test_every_sample_is_in_the_provenance_table(samples_dir: Path) -> None:
    """SOURCES.md has a provenance row for each of the 20 samples the tests read."""
    sources = (samples_dir / "SOURCES.md").read_text(encoding="utf-8")
    assert [name for name in SAMPLES if f"| {name} |" not in sources] == []


def test_files_are_byte_for_byte_the_upstream_copies(samples_dir: Path) -> None:
    """Each sample and the schema match the SHA-256 recorded when they were copied (no CRLF or BOM change)."""
    recorded = dict(
        reversed(line.split("  ", 1))
        for line in (samples_dir / "SHA256SUMS").read_text(encoding="ascii").splitlines()
    )
    assert set(recorded) == {*SAMPLES, SCHEMA}
    changed = [
        n
        for n, digest in recorded.items()
        if hashlib.sha256((samples_dir / n).read_bytes()).hexdigest() != digest
    ]
    assert changed == []


def test_nothing_in_the_repository_looks_for_files_beside_it() -> None:
    """No code, test, doc or bench file refers to a sibling folder of the clone (a fresh clone has none)."""
    needles = ("../" + "shared", "shared" + "/cap-samples", "shared" + "/DESIGN")
    paths = [REPO / "README.md", REPO / "Makefile", REPO / "pyproject.toml", REPO / "Dockerfile"]
    for folder in ("warning", "tests", "docs", "bench", "config"):
        paths += [
            p
            for p in (REPO / folder).rglob("*")
            if p.suffix in (".py", ".md", ".toml", ".txt", ".j2", ".html")
        ]
    offenders = [
        f"{p.relative_to(REPO)}: {needle}"
        for p in paths
        if p.is_file()
        for needle in needles
        if needle in p.read_text(encoding="utf-8", errors="replace")
    ]
    assert offenders == []
