"""The bundled sample county and the synthetic county generator (DESIGN §7, §8)."""

from __future__ import annotations

import collections
import csv
import re
import tracemalloc
from pathlib import Path

import pytest

from warning import phone
from warning.model import VULNERABLE_TAGS, Contact, Role
from warning.sample import generate
from warning.sample.generate import SAMPLE_RESIDENTS, SAMPLE_SEED, main, sample_files, write_county

Rows = list[dict[str, str]]


def read(path: Path) -> Rows:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sample() -> dict[str, Rows]:
    return {path.stem: read(path) for path in sample_files()}


def county_bytes(out: Path, residents: int, seed: int) -> list[bytes]:
    return [path.read_bytes() for path in write_county(out, residents=residents, seed=seed)]


def test_bundled_files_equal_a_fresh_generation(tmp_path: Path) -> None:
    """The bundled CSVs are exactly what the generator writes for the sample seed, so they cannot drift."""
    fresh = write_county(tmp_path, residents=SAMPLE_RESIDENTS, seed=SAMPLE_SEED)
    assert [p.name for p in fresh] == [p.name for p in sample_files()]
    for bundled, new in zip(sample_files(), fresh, strict=True):
        assert bundled.read_bytes() == new.read_bytes(), f"{bundled.name}: run --bundled to regenerate"


def test_files_are_utf8_without_bom_with_canonical_headers() -> None:
    """Each bundled file is UTF-8 without a BOM, newline-terminated, with the English header of DESIGN §7."""
    expected = {
        "villages": "code,name,township,county,lat,lon",
        "contacts": "id,name,phone,villages,role,wechat_userid",
        "residents": "id,name,phone,village,tags,language,wechat_openid,cadre",
        "speakers": "device_id,village,name",
    }
    assert [p.stem for p in sample_files()] == ["villages", "contacts", "residents", "speakers"]
    for path in sample_files():
        raw = path.read_bytes()
        assert not raw.startswith(b"\xef\xbb\xbf")
        assert b"\r" not in raw
        assert raw.decode("utf-8").split("\n", 1)[0] == expected[path.stem]


def test_same_seed_same_bytes_different_seed_different_county(tmp_path: Path) -> None:
    """Generation depends only on (residents, seed): repeated runs are byte-identical, another seed differs."""
    first = county_bytes(tmp_path / "a", 2500, 7)
    assert county_bytes(tmp_path / "b", 2500, 7) == first
    other = county_bytes(tmp_path / "c", 2500, 8)
    assert all(x != y for x, y in zip(first, other, strict=True))


def test_sample_has_twenty_villages_in_three_townships(sample: dict[str, Rows]) -> None:
    """The sample county is 20 villages in 3 townships of one county, with unique village names."""
    villages = sample["villages"]
    assert len(villages) == 20
    assert len({v["code"][:9] for v in villages}) == 3
    assert len({v["township"] for v in villages}) == 3
    assert {v["county"] for v in villages} == {generate.COUNTY_NAME}
    assert len({v["name"] for v in villages}) == 20
    assert all(v["name"].endswith("村") and v["township"].endswith("镇") for v in villages)


def test_sample_residents_are_about_fifteen_percent_vulnerable(sample: dict[str, Rows]) -> None:
    """About 3000 residents, 12–18 % vulnerable, most of whom are elderly; a handful read English."""
    residents = sample["residents"]
    assert len(residents) == SAMPLE_RESIDENTS
    vulnerable = [r for r in residents if VULNERABLE_TAGS & set(r["tags"].split(";"))]
    assert 0.12 <= len(vulnerable) / len(residents) <= 0.18
    assert sum("elderly" in r["tags"] for r in vulnerable) > len(vulnerable) / 2
    languages = collections.Counter(r["language"] for r in residents)
    assert set(languages) == {"zh-CN", "en"} and 0 < languages["en"] < 30


def test_sample_contacts_and_speakers(sample: dict[str, Rows]) -> None:
    """Each village has a cadre, a village head and two loudspeakers; each township and the county a duty officer."""
    roles = collections.Counter(c["role"] for c in sample["contacts"])
    assert roles == {"cadre": 20, "village_head": 20, "township_duty": 3, "county_duty": 1, "rescue_team": 1}
    speakers = sample["speakers"]
    assert len(speakers) == 40
    assert collections.Counter(s["village"] for s in speakers) == {v["code"]: 2 for v in sample["villages"]}
    assert all(s["device_id"] in (f"spk-{s['village']}-1", f"spk-{s['village']}-2") for s in speakers)


def test_every_vulnerable_resident_has_a_cadre_covering_their_village(sample: dict[str, Rows]) -> None:
    """A vulnerable resident's `cadre` is an existing contact with role cadre whose areas cover their village."""
    contacts = {
        c["id"]: Contact(c["id"], c["name"], Role(c["role"]), c["phone"], tuple(c["villages"].split(";")))
        for c in sample["contacts"]
    }
    vulnerable = [r for r in sample["residents"] if VULNERABLE_TAGS & set(r["tags"].split(";"))]
    assert vulnerable
    for resident in vulnerable:
        cadre = contacts[resident["cadre"]]
        assert cadre.role is Role.CADRE
        assert cadre.covers(resident["village"])


def test_codes_nest_village_in_township_in_county(sample: dict[str, Rows]) -> None:
    """Village codes are 12 digits under their township and county; contacts cover existing 6/9/12-digit areas."""
    villages = sample["villages"]
    townships = {v["code"][:9] for v in villages}
    for village in villages:
        assert re.fullmatch(r"331099(1\d\d)(2\d\d)", village["code"])
    known = {v["code"] for v in villages} | townships | {generate.COUNTY_CODE}
    assert all(set(c["villages"].split(";")) <= known for c in sample["contacts"])
    by_code = {v["code"]: v for v in villages}
    assert all(r["village"] in by_code for r in sample["residents"])
    assert all(s["village"] in by_code for s in sample["speakers"])
    for code in townships:
        assert len({v["township"] for v in villages if v["code"].startswith(code)}) == 1


def test_villages_lie_on_the_zhejiang_coast_near_their_township(sample: dict[str, Rows]) -> None:
    """Coordinates are inside 28.4–28.9 N, 121.2–121.7 E, and villages of one township are close together."""
    by_township = collections.defaultdict(list)
    for v in sample["villages"]:
        lat, lon = float(v["lat"]), float(v["lon"])
        assert 28.4 <= lat <= 28.9 and 121.2 <= lon <= 121.7
        by_township[v["code"][:9]].append((lat, lon))
    for places in by_township.values():
        lats, lons = zip(*places, strict=True)
        assert max(lats) - min(lats) <= 0.1 and max(lons) - min(lons) <= 0.1


def test_phones_are_unique_valid_and_synthetic(sample: dict[str, Rows]) -> None:
    """Every phone is E.164 in the synthetic block, valid, and used by one person only; few vulnerable lack one."""
    phones = [row["phone"] for kind in ("contacts", "residents") for row in sample[kind] if row["phone"]]
    assert len(phones) == len(set(phones))
    for number in phones:
        assert number.startswith(phone.SYNTHETIC_PREFIX) and len(number) == len(phone.SYNTHETIC_PREFIX) + 7
        assert phone.normalize(number) == number
    missing = [r for r in sample["residents"] if not r["phone"]]
    assert 0 < len(missing) < 30
    assert all(VULNERABLE_TAGS & set(r["tags"].split(";")) for r in missing)


def test_ids_are_unique_and_well_formed(sample: dict[str, Rows]) -> None:
    """Resident, contact, device and WeCom ids are unique; WeChat openids look real and skip no-smartphone people."""
    residents, contacts = sample["residents"], sample["contacts"]
    assert [r["id"] for r in residents] == [f"R{n:07d}" for n in range(1, len(residents) + 1)]
    assert len({c["id"] for c in contacts}) == len(contacts)
    assert all(re.fullmatch(r"C\d{5}", c["id"]) for c in contacts)
    userids = [c["wechat_userid"] for c in contacts]
    assert len(set(userids)) == len(userids) and all(re.fullmatch(r"[A-Za-z]+\d*", u) for u in userids)
    openids = [r["wechat_openid"] for r in residents if r["wechat_openid"]]
    assert len(set(openids)) == len(openids) > len(residents) / 3
    assert all(re.fullmatch(r"o[A-Za-z0-9_-]{27}", o) for o in openids)
    assert not any(r["wechat_openid"] for r in residents if "no_smartphone" in r["tags"])


def test_larger_counties_scale_villages_not_just_residents(tmp_path: Path) -> None:
    """50,000 residents live in about 50 villages of 500–1600 people each, in uniquely named places."""
    paths = write_county(tmp_path, residents=50_000, seed=3)
    villages, residents = read(paths[0]), read(paths[2])
    assert 40 <= len(villages) <= 60
    assert len({v["name"] for v in villages}) == len(villages)
    sizes = collections.Counter(r["village"] for r in residents)
    assert len(sizes) == len(villages) and sum(sizes.values()) == 50_000
    assert all(500 <= n <= 1600 for n in sizes.values())


def peak_bytes(out: Path, residents: int) -> int:
    tracemalloc.start()
    try:
        write_county(out, residents=residents, seed=11)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_memory_does_not_grow_with_residents(tmp_path: Path) -> None:
    """Residents are streamed: 200,000 of them need under 20 MB and less than twice the peak of 20,000."""
    small = peak_bytes(tmp_path / "small", 20_000)
    large = peak_bytes(tmp_path / "large", 200_000)
    assert large < 20 * 1024 * 1024
    assert large < 2 * small


def test_progress_is_reported_every_thousand_and_at_the_end(tmp_path: Path) -> None:
    """progress(done, total) rises in steps of 1000 and ends once with (total, total)."""
    calls: list[tuple[int, int]] = []
    write_county(tmp_path, residents=2500, seed=1, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1000, 2500), (2000, 2500), (2500, 2500)]


def test_impossible_sizes_are_rejected(tmp_path: Path) -> None:
    """A negative count, or more people than the synthetic phone block numbers, raises ValueError."""
    with pytest.raises(ValueError, match="zero or more"):
        write_county(tmp_path, residents=-1, seed=1)
    with pytest.raises(ValueError, match="phone block"):
        write_county(tmp_path, residents=6_000_000, seed=1)
    assert not list(tmp_path.iterdir())


def test_cli_writes_a_county_and_reports_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command writes the four files and lists them; bad input exits 2 with a reason."""
    assert main(["--residents", "1200", "--seed", "5", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in sample_files())
    assert "residents.csv" in out and "1,200/1,200" in err
    assert main(["--residents", "-5", "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["--bundled", "--seed", "3"])
    assert exc.value.code == 2
