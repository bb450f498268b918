"""The directory in Redis: villages, residents, contacts and loudspeakers, with indexes for streaming.

Layout (every key under `{namespace}:1:dir:`):
    villages            HASH code → Village JSON        villagecodes   ZSET of codes (prefix ranges by lex)
    residents           HASH id → Resident JSON         residents:idx  HASH id → the index sets it is in
    contacts, speakers  likewise
    v:{code}:residents  SET resident ids of a village   v:{code}:tag:{tag}  SET ids with that tag
    v:{code}:vulnerable SET ids of must-reach residents v:{code}:unassigned  SET vulnerable ids with no cadre
    cadre:{id}:residents SET ids a cadre confirms       v:{code}:speakers   SET device ids
    area:{code}:contacts SET contact ids covering a 6/9/12-digit code;  role:{role}:contacts  SET ids
    tags                SET every tag ever seen

A record and its index memberships change together in one Lua call, so the indexes never disagree
with the records, and a re-import of an unchanged row writes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from warning.model import VULNERABLE_TAGS, Contact, Kind, Record, Resident, Role, Speaker, Village
from warning.store import Store

# Statuses the upsert script reports per row.
CREATED: Final = "c"
UPDATED: Final = "u"
UNCHANGED: Final = "="
DUPLICATE: Final = "d"  # the same id appeared earlier in the same import run

_UPSERT = """
local base = ARGV[1]
local records = base .. ':' .. ARGV[2]
local idxmap = records .. ':idx'
local seen = ARGV[3]
local out = {}
for i = 4, #ARGV, 3 do
  local id, value, idx = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if seen ~= '' and redis.call('SADD', seen, id) == 0 then
    out[#out + 1] = 'd'
  else
    local old = redis.call('HGET', records, id)
    if old == value then
      out[#out + 1] = '='
    else
      local oldidx = redis.call('HGET', idxmap, id) or ''
      local keep = {}
      for s in string.gmatch(idx, '[^\\n]+') do keep[s] = true end
      for s in string.gmatch(oldidx, '[^\\n]+') do
        if not keep[s] then redis.call('SREM', base .. ':' .. s, id) end
      end
      for s in pairs(keep) do redis.call('SADD', base .. ':' .. s, id) end
      redis.call('HSET', records, id, value)
      redis.call('HSET', idxmap, id, idx)
      out[#out + 1] = old and 'u' or 'c'
    end
  end
end
if seen ~= '' then redis.call('EXPIRE', seen, 86400) end
return table.concat(out)
"""


def _text(value: str | bytes) -> str:
    # The client decodes responses; this narrows redis-py's `str | bytes` for the type checker.
    return value if isinstance(value, str) else value.decode()


def _index_sets(record: Record) -> list[str]:
    """The index sets (key suffixes) a record belongs to."""
    match record:
        case Village():
            return []
        case Resident(id=_, village=v, tags=tags, cadre=cadre):
            sets = [f"v:{v}:residents", *(f"v:{v}:tag:{tag}" for tag in sorted(tags))]
            if record.vulnerable:
                sets.append(f"v:{v}:vulnerable")
                if not cadre:
                    sets.append(f"v:{v}:unassigned")
            if cadre:
                sets.append(f"cadre:{cadre}:residents")
            return sets
        case Contact(role=role, areas=areas):
            return [f"role:{role.value}:contacts", *(f"area:{a}:contacts" for a in areas)]
        case Speaker(village=v):
            return [f"v:{v}:speakers"]


def _record_id(record: Record) -> str:
    match record:
        case Village(code=code):
            return code
        case Speaker(device_id=device_id):
            return device_id
        case Resident(id=rid) | Contact(id=rid):
            return rid


def _kind(record: Record) -> Kind:
    match record:
        case Village():
            return Kind.VILLAGES
        case Resident():
            return Kind.RESIDENTS
        case Contact():
            return Kind.CONTACTS
        case Speaker():
            return Kind.SPEAKERS


@dataclass(frozen=True)
class VillageStats:
    code: str
    name: str
    township: str
    residents: int
    vulnerable: int
    unassigned: int
    speakers: int
    contacts: int
    tags: dict[str, int]


@dataclass(frozen=True)
class DirectoryStats:
    """Counts for `warning directory stats` and `/metrics`; built from index cardinalities, never scans."""

    villages: list[VillageStats] = field(default_factory=list)
    contacts_by_role: dict[str, int] = field(default_factory=dict)
    unknown_cadres: dict[str, int] = field(default_factory=dict)  # cadre id → residents pointing at it

    @property
    def residents(self) -> int:
        return sum(v.residents for v in self.villages)

    @property
    def vulnerable(self) -> int:
        return sum(v.vulnerable for v in self.villages)

    @property
    def unassigned(self) -> int:
        return sum(v.unassigned for v in self.villages)

    @property
    def speakers(self) -> int:
        return sum(v.speakers for v in self.villages)

    @property
    def contacts(self) -> int:
        return sum(self.contacts_by_role.values())

    def tags(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for village in self.villages:
            for tag, n in village.tags.items():
                total[tag] = total.get(tag, 0) + n
        return dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))


class Directory:
    """Reads and writes the directory; every query streams in batches so memory never grows with a county."""

    def __init__(self, store: Store) -> None:
        self._redis = store.redis
        self._base = store.keys.key("dir")
        self._upsert = store.redis.register_script(_UPSERT)

    def _key(self, suffix: str) -> str:
        return f"{self._base}:{suffix}"

    # -- writing -----------------------------------------------------------------------------------

    async def upsert(self, records: Sequence[Record], *, run_id: str = "") -> str:
        """Insert or update records of one kind by id; return one status character per record.

        Statuses: `c` created, `u` updated, `=` unchanged, `d` duplicate of an id already written
        in the same `run_id` (that row is not written). Records and indexes change atomically.
        """
        if not records:
            return ""
        kind = _kind(records[0])
        seen = self._key(f"import:{run_id}:{kind.value}") if run_id else ""
        args: list[str] = [self._base, kind.value, seen]
        for record in records:
            if _kind(record) is not kind:
                raise TypeError("upsert takes records of one kind")
            args += [_record_id(record), record.to_json(), "\n".join(_index_sets(record))]
        async with self._redis.pipeline(transaction=True) as pipe:
            await self._upsert(keys=[], args=args, client=pipe)
            if kind is Kind.VILLAGES:
                pipe.zadd(self._key("villagecodes"), {_record_id(r): 0 for r in records})
            if kind is Kind.RESIDENTS:
                tags = {tag for r in records if isinstance(r, Resident) for tag in r.tags}
                if tags:
                    pipe.sadd(self._key("tags"), *tags)
            result = await pipe.execute()
        return str(result[0])

    async def end_run(self, run_id: str) -> None:
        """Forget the ids seen during an import run."""
        await self._redis.delete(*(self._key(f"import:{run_id}:{k.value}") for k in Kind))

    # -- villages ----------------------------------------------------------------------------------

    async def village_codes(self, areas: Iterable[str] = ("",)) -> list[str]:
        """Codes of the villages under any of `areas` (6-, 9- or 12-digit prefixes; "" = all), sorted."""
        codes: set[str] = set()
        for area in areas:
            low, high = ("-", "+") if not area else (f"[{area}", f"({area}\xff")
            codes.update(map(_text, await self._redis.zrangebylex(self._key("villagecodes"), low, high)))
        return sorted(codes)

    async def villages(self, codes: Sequence[str]) -> list[Village]:
        """The villages with these codes, in the same order; unknown codes are skipped."""
        if not codes:
            return []
        raw = await self._redis.hmget(self._key("villages"), list(codes))
        return [Village.from_json(r) for r in raw if r is not None]

    async def is_empty(self) -> bool:
        return not await self._redis.exists(self._key("villagecodes"), self._key("residents"))

    # -- residents ---------------------------------------------------------------------------------

    async def resident(self, resident_id: str) -> Resident | None:
        raw = await self._redis.hget(self._key("residents"), resident_id)
        return Resident.from_json(raw) if raw else None

    async def stream_residents(
        self,
        areas: Iterable[str],
        *,
        any_tags: frozenset[str] = frozenset(),
        batch_size: int = 500,
    ) -> AsyncIterator[list[Resident]]:
        """Yield the residents of the villages under `areas` in batches, village by village.

        With `any_tags`, only residents carrying at least one of them (the vulnerable tag set uses its
        own index). Memory is bounded by one batch plus the ids of one village, whatever the county size.
        """
        for code in await self.village_codes(areas):
            if not any_tags:
                sources = [f"v:{code}:residents"]
            elif any_tags == VULNERABLE_TAGS:
                sources = [f"v:{code}:vulnerable"]
            else:
                sources = [f"v:{code}:tag:{tag}" for tag in sorted(any_tags)]
            seen: set[str] = set()
            for source in sources:
                async for ids in self._scan_set(self._key(source), batch_size, seen):
                    raw = await self._redis.hmget(self._key("residents"), ids)
                    yield [Resident.from_json(r) for r in raw if r is not None]

    async def _scan_set(self, key: str, batch_size: int, seen: set[str]) -> AsyncIterator[list[str]]:
        cursor: int = 0
        pending: list[str] = []
        while True:
            cursor, members = await self._redis.sscan(key, cursor, count=batch_size)
            for member in map(_text, members):
                if member not in seen:  # SSCAN may return a member twice while the set rehashes
                    seen.add(member)
                    pending.append(member)
            while len(pending) >= batch_size:
                yield pending[:batch_size]
                pending = pending[batch_size:]
            if cursor == 0:
                break
        if pending:
            yield pending

    async def residents_of_cadre(
        self, contact_id: str, batch_size: int = 500
    ) -> AsyncIterator[list[Resident]]:
        """Yield the residents a cadre is assigned to confirm, in batches."""
        async for ids in self._scan_set(self._key(f"cadre:{contact_id}:residents"), batch_size, set()):
            raw = await self._redis.hmget(self._key("residents"), ids)
            yield [Resident.from_json(r) for r in raw if r is not None]

    # -- contacts and speakers ---------------------------------------------------------------------

    async def residents(self, ids: Sequence[str]) -> dict[str, Resident]:
        """The residents with these ids (unknown ids left out), in one round trip."""
        if not ids:
            return {}
        raw = await self._redis.hmget(self._key("residents"), list(ids))
        return {rid: Resident.from_json(r) for rid, r in zip(ids, raw, strict=True) if r is not None}

    async def contacts(self, ids: Sequence[str]) -> dict[str, Contact]:
        """The contacts with these ids (unknown ids left out), in one round trip."""
        if not ids:
            return {}
        raw = await self._redis.hmget(self._key("contacts"), list(ids))
        return {cid: Contact.from_json(r) for cid, r in zip(ids, raw, strict=True) if r is not None}

    async def contact(self, contact_id: str) -> Contact | None:
        raw = await self._redis.hget(self._key("contacts"), contact_id)
        return Contact.from_json(raw) if raw else None

    async def contacts_for(self, village_code: str, role: Role) -> list[Contact]:
        """Contacts with `role` covering a village: its own, then its township's, then its county's."""
        found: list[Contact] = []
        for area in (village_code, village_code[:9], village_code[:6]):
            ids = await self._redis.sinter(
                [self._key(f"area:{area}:contacts"), self._key(f"role:{role.value}:contacts")]
            )
            if ids:
                raw = await self._redis.hmget(self._key("contacts"), sorted(map(_text, ids)))
                found += [Contact.from_json(r) for r in raw if r is not None]
        return found

    async def stream_contacts(self, batch_size: int = 1000) -> AsyncIterator[list[Contact]]:
        """Yield every contact in batches (a county has thousands, not millions), in no set order."""
        cursor: int = 0
        while True:
            cursor, batch = await self._redis.hscan(self._key("contacts"), cursor, count=batch_size)
            # redis-py types HSCAN's page as a dict or (with no_values) a list; it is a dict here.
            if isinstance(batch, dict) and batch:
                yield [Contact.from_json(raw) for raw in batch.values()]
            if cursor == 0:
                break

    async def speaker(self, device_id: str) -> Speaker | None:
        raw = await self._redis.hget(self._key("speakers"), device_id)
        return Speaker.from_json(raw) if raw else None

    async def speakers(self, ids: Sequence[str]) -> dict[str, Speaker]:
        """The loudspeakers with these device ids (unknown ids left out), in one round trip."""
        if not ids:
            return {}
        raw = await self._redis.hmget(self._key("speakers"), list(ids))
        return {d: Speaker.from_json(r) for d, r in zip(ids, raw, strict=True) if r is not None}

    async def village_counts(self, codes: Sequence[str]) -> dict[str, dict[str, int]]:
        """Per village: residents, must_reach (vulnerable residents) and speakers, from the index sets'
        cardinalities, in one round trip for all `codes`."""
        if not codes:
            return {}
        parts = ("residents", "vulnerable", "speakers")
        async with self._redis.pipeline(transaction=False) as pipe:
            for code in codes:
                for part in parts:
                    pipe.scard(self._key(f"v:{code}:{part}"))
            found = await pipe.execute()
        return {
            code: {"residents": int(r), "must_reach": int(m), "speakers": int(sp)}
            for code, (r, m, sp) in zip(codes, zip(*[iter(found)] * 3, strict=True), strict=True)
        }

    async def speaker_ids(self, codes: Sequence[str]) -> dict[str, list[str]]:
        """Each village's loudspeaker device ids, sorted, in one pipelined round trip for all `codes`
        (a village has a handful; for a village's full records use `stream_speakers`)."""
        if not codes:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for code in codes:
                pipe.smembers(self._key(f"v:{code}:speakers"))
            found = await pipe.execute()
        return {code: sorted(map(_text, ids)) for code, ids in zip(codes, found, strict=True)}

    async def stream_speakers(
        self, areas: Iterable[str], batch_size: int = 500
    ) -> AsyncIterator[list[Speaker]]:
        """Yield the loudspeakers of the villages under `areas` in batches."""
        for code in await self.village_codes(areas):
            async for ids in self._scan_set(self._key(f"v:{code}:speakers"), batch_size, set()):
                raw = await self._redis.hmget(self._key("speakers"), ids)
                yield [Speaker.from_json(r) for r in raw if r is not None]

    # -- counts ------------------------------------------------------------------------------------

    async def totals(self) -> dict[str, int]:
        """Record counts per kind (O(1) each), for `/metrics` and a quick look."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for kind in Kind:
                pipe.hlen(self._key(kind.value))
            counts = await pipe.execute()
        return {kind.value: int(n) for kind, n in zip(Kind, counts, strict=True)}

    async def stats(self) -> DirectoryStats:
        """Counts per village (residents, vulnerable, speakers, contacts, tags) and per contact role."""
        codes = await self.village_codes()
        tags = sorted(map(_text, await self._redis.smembers(self._key("tags"))))
        villages = await self.villages(codes)
        per_village: list[VillageStats] = []
        async with self._redis.pipeline(transaction=False) as pipe:
            for code in codes:
                for suffix in ("residents", "vulnerable", "unassigned", "speakers"):
                    pipe.scard(self._key(f"v:{code}:{suffix}"))
                pipe.scard(self._key(f"area:{code}:contacts"))
                for tag in tags:
                    pipe.scard(self._key(f"v:{code}:tag:{tag}"))
            for role in Role:
                pipe.scard(self._key(f"role:{role.value}:contacts"))
            counts: list[Any] = await pipe.execute()
        width = 5 + len(tags)
        for i, village in enumerate(villages):
            row = counts[i * width : (i + 1) * width]
            per_village.append(
                VillageStats(
                    code=village.code,
                    name=village.name,
                    township=village.township,
                    residents=row[0],
                    vulnerable=row[1],
                    unassigned=row[2],
                    speakers=row[3],
                    contacts=row[4],
                    tags={tag: n for tag, n in zip(tags, row[5:], strict=True) if n},
                )
            )
        roles = counts[len(villages) * width :]
        return DirectoryStats(
            villages=per_village,
            contacts_by_role={role.value: n for role, n in zip(Role, roles, strict=True)},
            unknown_cadres=await self._unknown_cadres(),
        )

    async def _unknown_cadres(self) -> dict[str, int]:
        pattern = self._key("cadre:*:residents")
        unknown: dict[str, int] = {}
        async for raw_key in self._redis.scan_iter(match=pattern, count=1000):
            key = _text(raw_key)
            cadre_id = key[len(self._key("cadre:")) : -len(":residents")]
            if not await self._redis.hexists(self._key("contacts"), cadre_id):
                unknown[cadre_id] = int(await self._redis.scard(key))
        return unknown
