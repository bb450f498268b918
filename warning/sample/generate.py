"""Generator of synthetic counties, and the bundled sample county 海屿县 (DESIGN §8).

`write_county` streams a fictional coastal county of any size into the four directory files of
DESIGN §7. The county code 331099 (Zhejiang, prefecture 10, county 99) does not exist, and every
phone number lies in the synthetic block of `warning.phone`, so generated data can be imported
anywhere without reaching a real person. Output depends only on (residents, seed): the bundled
sample is `write_county(sample_dir(), residents=SAMPLE_RESIDENTS, seed=SAMPLE_SEED)`.

    python -m warning.sample.generate --residents 1000000 --seed 7 --out /tmp/county
    python -m warning.sample.generate --bundled
"""

from __future__ import annotations

import argparse
import base64
import bisect
import csv
import itertools
import random
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from warning.model import DEFAULT_LANGUAGE, Kind, Role
from warning.phone import SYNTHETIC_PREFIX
from warning.sample import names

SAMPLE_SEED = 2024
SAMPLE_RESIDENTS = 3000

COUNTY_CODE = "331099"
COUNTY_NAME = "海屿县"

HEADERS: dict[Kind, tuple[str, ...]] = {
    Kind.VILLAGES: ("code", "name", "township", "county", "lat", "lon"),
    Kind.CONTACTS: ("id", "name", "phone", "villages", "role", "wechat_userid"),
    Kind.RESIDENTS: ("id", "name", "phone", "village", "tags", "language", "wechat_openid", "cadre"),
    Kind.SPEAKERS: ("device_id", "village", "name"),
}
IMPORT_ORDER = (Kind.VILLAGES, Kind.CONTACTS, Kind.RESIDENTS, Kind.SPEAKERS)

# Only +86 17400… to +86 17405… are valid numbers (satellite terminals), so the block holds six
# million numbers; the seventh digit after the prefix stays below 6.
_PHONE_SPACE = 6_000_000
_PROGRESS_EVERY = 1000

# The county sits on the Zhejiang coast; east of _COAST_LON villages face the sea.
_LAT = (28.4, 28.9)
_LON = (121.2, 121.7)
_COAST_LON = 121.5
_VILLAGE_SPREAD = 0.035  # degrees around the township seat, about 4 km

# Shares of residents. Elderly people are most of the vulnerable; about 15 % end up vulnerable.
_P_ELDERLY = 0.13
_P_ALONE = 0.45  # of the elderly
_P_NO_SMARTPHONE_ELDERLY = 0.5
_P_NO_SMARTPHONE = 0.007  # of the others
_P_DISABLED = 0.02
_P_NO_PHONE = 0.03  # of the vulnerable
_P_WECHAT = 0.6
_P_WECHAT_VULNERABLE = 0.3
_P_FISHERMAN_COAST = 0.16  # of men under 65 in a coastal village
_P_FISHERMAN_INLAND = 0.02
_P_TOURIST_HOST = 0.015
_P_PREGNANT = 0.015  # of women under 65
_P_ENGLISH = 0.004  # of people under 65

# Tags as bits, spelled in this order; the first four are the vulnerable ones (model.VULNERABLE_TAGS).
_TAG_ORDER = ("elderly", "lives_alone", "no_smartphone", "disabled", "fisherman", "tourist_host", "pregnant")
_ELDERLY, _LIVES_ALONE, _NO_SMARTPHONE, _DISABLED, _FISHERMAN, _TOURIST_HOST, _PREGNANT = (
    1 << i for i in range(len(_TAG_ORDER))
)
_VULNERABLE = _ELDERLY | _LIVES_ALONE | _NO_SMARTPHONE | _DISABLED
_SURNAMES = tuple(s[0] for s in names.SURNAMES)
_TAGS = [
    ";".join(tag for i, tag in enumerate(_TAG_ORDER) if mask >> i & 1) for mask in range(1 << len(_TAG_ORDER))
]


@dataclass(slots=True)
class _Village:
    code: str
    name: str
    lat: float
    lon: float
    residents: int
    cadre: str
    head: str

    @property
    def coastal(self) -> bool:
        return self.lon >= _COAST_LON


@dataclass(slots=True)
class _Township:
    code: str
    name: str
    duty: str
    villages: list[_Village] = field(default_factory=list)


@dataclass(slots=True)
class _County:
    """Everything but the residents: small (a few thousand villages at most), kept in memory."""

    townships: list[_Township]
    county_duty: str
    rescue_team: str
    contacts: int


class _PhoneBlock:
    """Distinct numbers of the synthetic block: a seeded permutation of a counter.

    Counting through a permutation, not drawing at random, makes numbers unique without remembering
    them. The number is split as 3 + 4 digits (600 × 10,000), each part from a shuffled table, so
    neighbours' numbers look unrelated and a number costs one string concatenation.
    """

    def __init__(self, rng: random.Random) -> None:
        self._heads = [f"{SYNTHETIC_PREFIX}{h:03d}" for h in range(_PHONE_SPACE // 10_000)]
        self._tails = [f"{t:04d}" for t in range(10_000)]
        rng.shuffle(self._heads)
        rng.shuffle(self._tails)
        self._shifts = [rng.randrange(10_000) for _ in self._heads]

    def numbers(self, start: int = 0) -> Iterator[str]:
        """The numbers of counters `start`, `start + 1`, … up to the end of the block."""
        first_rest, first = divmod(start, len(self._heads))
        for rest in range(first_rest, 10_000):
            for head in range(first, len(self._heads)):
                yield self._heads[head] + self._tails[(rest + self._shifts[head]) % 10_000]
            first = 0


def sample_dir() -> Path:
    """The directory of the bundled sample county's CSV files, inside the installed package."""
    # A regular package on the file system (in place or from a wheel); zip imports are not supported.
    return Path(str(resources.files("warning.sample") / "data"))


def sample_files() -> list[Path]:
    """The bundled sample county's files in import order: villages, contacts, residents, speakers."""
    return [sample_dir() / f"{kind.value}.csv" for kind in IMPORT_ORDER]


def write_county(
    out_dir: Path, *, residents: int, seed: int, progress: Callable[[int, int], None] | None = None
) -> list[Path]:
    """Write a synthetic county of `residents` people into `out_dir`; return the files in import order.

    Residents are streamed row by row, so memory does not grow with `residents`; the same
    (residents, seed) always gives byte-identical files. `progress(done, total)` is called every
    thousand residents and once at the end.

    Raises:
        ValueError: `residents` is negative or more than the synthetic phone block can number.
        OSError: `out_dir` cannot be created or written.
    """
    if residents < 0:
        raise ValueError(f"residents must be zero or more, not {residents}")
    county = _layout(residents, seed)
    if county.contacts + residents > _PHONE_SPACE:
        raise ValueError(
            f"at most {_PHONE_SPACE - county.contacts:,} residents fit the synthetic phone block"
        )
    phones = _PhoneBlock(random.Random(f"{seed}:phones"))
    rows: dict[Kind, Iterable[Sequence[str]]] = {
        Kind.VILLAGES: _village_rows(county),
        Kind.CONTACTS: _contact_rows(county, seed, phones),
        Kind.RESIDENTS: _resident_rows(county, seed, phones, residents, progress),
        Kind.SPEAKERS: _speaker_rows(county, seed),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    return [_write_csv(out_dir / f"{kind.value}.csv", HEADERS[kind], rows[kind]) for kind in IMPORT_ORDER]


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _layout(residents: int, seed: int) -> _County:
    """Townships and villages with names, codes, places, sizes and contact ids."""
    rng = random.Random(f"{seed}:layout")
    # The sample has 20 small villages; real counties have villages of 600–1500 people.
    n_villages = max(1, min(residents, max(20, round(residents / 1000))))
    n_townships = max(min(3, n_villages), round(n_villages / 20))
    per_township = [
        1 + n
        for n in _apportion(n_villages - n_townships, [rng.uniform(0.75, 1.25) for _ in range(n_townships)])
    ]
    sizes = iter(_apportion(residents, [rng.uniform(0.6, 1.5) for _ in range(n_villages)]))

    two = [a + b for a in names.PLACE_FIRST for b in names.PLACE_LANDFORM]
    rng.shuffle(two)
    village_bases = two[n_townships:] + [
        c + "家" + b for c in names.PLACE_CLANS for b in names.PLACE_LANDFORM
    ]
    rng.shuffle(village_bases)
    village_names = _unique_names(village_bases, "村")

    counter = itertools.count(1)

    def contact_id() -> str:
        return f"C{next(counter):05d}"

    county = _County([], county_duty=contact_id(), rescue_team=contact_id(), contacts=0)
    for t, count in enumerate(per_township):
        code = f"{COUNTY_CODE}{101 + t:03d}"
        township = _Township(code, two[t] + "镇", duty=contact_id())
        seat_lat = rng.uniform(_LAT[0] + 0.05, _LAT[1] - 0.05)
        seat_lon = rng.uniform(_LON[0] + 0.05, _LON[1] - 0.05)
        for v in range(count):
            lat = min(max(seat_lat + rng.uniform(-_VILLAGE_SPREAD, _VILLAGE_SPREAD), _LAT[0]), _LAT[1])
            lon = min(max(seat_lon + rng.uniform(-_VILLAGE_SPREAD, _VILLAGE_SPREAD), _LON[0]), _LON[1])
            village_code, name = f"{code}{201 + v:03d}", next(village_names)
            township.villages.append(
                _Village(
                    village_code, name, round(lat, 5), round(lon, 5), next(sizes), contact_id(), contact_id()
                )
            )
        county.townships.append(township)
    county.contacts = next(counter) - 1
    return county


def _apportion(total: int, weights: list[float]) -> list[int]:
    """Split `total` into integers proportional to `weights` (largest remainder)."""
    if not weights:
        return []
    shares = [w * total / sum(weights) for w in weights]
    counts = [int(s) for s in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: (counts[i] - shares[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _unique_names(bases: list[str], suffix: str) -> Iterator[str]:
    """东溪村, 石桥村, … and once the bases run out 东溪二村, 石桥二村, … as real counties do."""
    for round_ in itertools.count():
        numeral = "" if round_ == 0 else _numeral(round_ + 1)
        for base in bases:
            yield base + numeral + suffix


def _numeral(n: int) -> str:
    return names.NUMERALS[n - 1] if n <= len(names.NUMERALS) else str(n)


def _village_rows(county: _County) -> Iterator[tuple[str, ...]]:
    for township in county.townships:
        for v in township.villages:
            yield v.code, v.name, township.name, COUNTY_NAME, f"{v.lat:.5f}", f"{v.lon:.5f}"


def _contact_rows(county: _County, seed: int, phones: _PhoneBlock) -> Iterator[tuple[str, ...]]:
    rng = random.Random(f"{seed}:contacts")
    numbers = phones.numbers()
    surnames = [s[:2] for s in names.SURNAMES]
    weights = [s[2] for s in names.SURNAMES]
    taken: set[str] = set()

    def row(cid: str, areas: str, role: Role, team: str = "") -> tuple[str, ...]:
        surname, surname_py = rng.choices(surnames, weights)[0]
        given, given_py = rng.choice(names.CONTACT_GIVEN)
        name, base = (team, "JiuYuanDui") if team else (surname + given, surname_py + given_py)
        # WeCom user ids are unique in the organisation: a second 陈建华 becomes ChenJianHua2.
        userid, n = base, 1
        while userid in taken:
            n += 1
            userid = f"{base}{n}"
        taken.add(userid)
        return cid, name, next(numbers), areas, role.value, userid

    yield row(county.county_duty, COUNTY_CODE, Role.COUNTY_DUTY)
    yield row(county.rescue_team, COUNTY_CODE, Role.RESCUE_TEAM, team=f"{COUNTY_NAME}应急救援队")
    for township in county.townships:
        yield row(township.duty, township.code, Role.TOWNSHIP_DUTY)
        for v in township.villages:
            yield row(v.cadre, v.code, Role.CADRE)
            yield row(v.head, v.code, Role.VILLAGE_HEAD)


def _resident_rows(
    county: _County, seed: int, phones: _PhoneBlock, total: int, progress: Callable[[int, int], None] | None
) -> Iterator[tuple[str, ...]]:
    numbers = phones.numbers(start=county.contacts)
    done = 0
    for township in county.townships:
        for village in township.villages:
            people = _Villagers(village, seed)
            for _ in range(village.residents):
                done += 1
                yield people.row(f"R{done:07d}", next(numbers))
                if progress is not None and done % _PROGRESS_EVERY == 0:
                    progress(done, total)
    if progress is not None and (done == 0 or done % _PROGRESS_EVERY):
        progress(done, total)


class _Villagers:
    """The people of one village, drawn one at a time from the village's own random stream.

    This is the hot path of a million-resident county: it picks from sequences by index and spells
    tags from a bit mask, because every object allocated per row costs time at that size.
    """

    def __init__(self, village: _Village, seed: int) -> None:
        self._village = village
        self._rng = random.Random(f"{seed}:{village.code}")
        self._clans = _clan_weights(village, self._rng)
        self._fisher = _P_FISHERMAN_COAST if village.coastal else _P_FISHERMAN_INLAND

    def row(self, rid: str, phone: str) -> tuple[str, ...]:
        """The next resident's row; `phone` is theirs unless they turn out to have none."""
        r = self._rng.random
        female = r() < 0.5
        mask = self._tags(female)
        english = not mask & _ELDERLY and r() < _P_ENGLISH
        vulnerable = mask & _VULNERABLE
        if vulnerable and r() < _P_NO_PHONE:
            phone = ""
        v = self._village
        language = "en" if english else DEFAULT_LANGUAGE
        name = self._name(female, mask & _ELDERLY, english)
        return (
            rid,
            name,
            phone,
            v.code,
            _TAGS[mask],
            language,
            self._openid(mask),
            v.cadre if vulnerable else "",
        )

    def _tags(self, female: bool) -> int:
        r = self._rng.random
        if r() < _P_ELDERLY:
            mask = _ELDERLY
            if r() < _P_ALONE:
                mask |= _LIVES_ALONE
            if r() < _P_NO_SMARTPHONE_ELDERLY:
                mask |= _NO_SMARTPHONE
            if r() < _P_DISABLED:
                mask |= _DISABLED
            return mask
        mask = _NO_SMARTPHONE if r() < _P_NO_SMARTPHONE else 0
        if r() < _P_DISABLED:
            mask |= _DISABLED
        if not female and r() < self._fisher:
            mask |= _FISHERMAN
        if r() < _P_TOURIST_HOST:
            mask |= _TOURIST_HOST
        if female and r() < _P_PREGNANT:
            mask |= _PREGNANT
        return mask

    def _name(self, female: bool, elderly: int, english: bool) -> str:
        r = self._rng.random
        if english:
            return names.FOREIGN[int(r() * len(names.FOREIGN))]
        if elderly:
            given = names.ELDER_FEMALE if female else names.ELDER_MALE
        else:
            given = names.FEMALE if female else names.MALE
        return _SURNAMES[bisect.bisect(self._clans, r() * self._clans[-1])] + given[int(r() * len(given))]

    def _openid(self, mask: int) -> str:
        if mask & _NO_SMARTPHONE or self._rng.random() >= (
            _P_WECHAT_VULNERABLE if mask & _VULNERABLE else _P_WECHAT
        ):
            return ""
        # WeChat openids are 28 characters: "o" and 27 of the URL-safe base64 alphabet.
        return "o" + base64.urlsafe_b64encode(self._rng.randbytes(21)).decode()[:27]


def _clan_weights(village: _Village, rng: random.Random) -> list[int]:
    """Cumulative surname weights of a village: one or two clans dominate, and 王家岙 is mostly 王."""
    weights = [s[2] for s in names.SURNAMES]
    clan = village.name[0] if village.name[1] == "家" and village.name[0] in _SURNAMES else None
    dominant = [_SURNAMES.index(clan)] if clan else []
    dominant += rng.choices(range(len(_SURNAMES)), weights, k=2)
    for i, boost in zip(dominant, (12, 5, 3), strict=False):
        weights[i] *= boost
    return list(itertools.accumulate(weights))


def _speaker_rows(county: _County, seed: int) -> Iterator[tuple[str, ...]]:
    rng = random.Random(f"{seed}:speakers")
    for township in county.townships:
        for v in township.villages:
            # Fishing villages put their second speaker where the boats are.
            coast = v.coastal and rng.random() < 0.8
            yield f"spk-{v.code}-1", v.code, names.SPEAKER_FIRST
            yield f"spk-{v.code}-2", v.code, rng.choice(names.SPEAKER_COAST if coast else names.SPEAKER_SITES)


def main(argv: list[str] | None = None) -> int:
    """Command line: write a synthetic county, or regenerate the bundled sample; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m warning.sample.generate",
        description="生成虚构沿海县的目录文件（villages/contacts/residents/speakers.csv）。"
        " Write a synthetic county's directory files.",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, metavar="DIR", help="输出目录 / output directory")
    target.add_argument(
        "--bundled", action="store_true", help="重新生成内置样例县 / regenerate the bundled sample county"
    )
    parser.add_argument("--residents", type=int, metavar="N", help=f"居民人数 (default {SAMPLE_RESIDENTS})")
    parser.add_argument("--seed", type=int, metavar="S", help=f"随机种子 (default {SAMPLE_SEED})")
    args = parser.parse_args(argv)
    if args.bundled and (args.residents is not None or args.seed is not None):
        parser.error("--bundled 使用固定的人数与种子，不能同时指定 --residents 或 --seed")
    out: Path = sample_dir() if args.bundled else args.out
    residents: int = SAMPLE_RESIDENTS if args.residents is None else args.residents
    seed: int = SAMPLE_SEED if args.seed is None else args.seed

    def show(done: int, total: int) -> None:
        percent = 100 * done // total if total else 100
        print(f"\r生成居民 {done:,}/{total:,} ({percent}%)", end="", file=sys.stderr, flush=True)

    try:
        paths = write_county(out, residents=residents, seed=seed, progress=show)
    except ValueError as exc:
        print(f"\n错误：{exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"\n错误：无法写入 {out}：{exc}", file=sys.stderr)
        return 1
    print(file=sys.stderr)
    for path in paths:
        print(f"{path}  {path.stat().st_size:,} B")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
