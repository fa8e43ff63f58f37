"""FHIR R4 files (Bundles, bulk-export NDJSON, gzip) → rows of `bronze.fhir_resources`.

Each resource is kept exactly as received except that `urn:uuid:` references (how
transaction Bundles point at each other) are rewritten to `ResourceType/id`, so that
references mean the same thing once the Bundle is taken apart.

Two ways through a file. The fast one (`_fast_bundle`, `_fast_line`) reads only what a
row needs (type, id, lastUpdated, the patient links) with msgspec and keeps each
resource's bytes as they came, validated but never built as Python objects. It takes
compact JSON, the form bulk exports and our generator write. Anything else (pretty
printing, entries without a usable resource, odd types, bad JSON) goes the general way:
orjson builds the resource, whose compact re-serialization is stored, and every problem
gets its sentence. Both give the same rows for a compact file.
"""
from __future__ import annotations

import gc
import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import groupby
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import ColumnProperties, WriterProperties

from medlake.ingest import Batch, Modality, Parsed, Problem, TableSpec

FHIR_RESOURCES = TableSpec(
    name="bronze.fhir_resources",
    schema=pa.schema([
        ("resource_type", pa.string()), ("resource_id", pa.string()),
        ("patient_ref", pa.string()), ("last_updated", pa.timestamp("us", tz="UTC")),
        ("resource", pa.string()), ("source_uri", pa.string()),
        ("source_sha256", pa.string()), ("batch_id", pa.string()),
        ("ingested_at", pa.timestamp("us", tz="UTC")),
    ]),
    keys=["resource_type", "resource_id"],
    # zstd (level 1) stores the JSON in 40% of snappy's bytes at no slower a write; a
    # dictionary over resources that are each unique only costs the attempt.
    writer_properties=WriterProperties(
        compression="ZSTD", compression_level=1,
        column_properties={"resource": ColumnProperties(dictionary_enabled=False)}),
    description=(
        "Every FHIR R4 resource from `landing/fhir/` (Bundles, bulk-export NDJSON, gzip), "
        "exactly as received, one row per (resource_type, resource_id). Bundle-local "
        "`urn:uuid:` references are rewritten to `Type/id`. Files already ingested (same "
        "sha256) are skipped; bad files and entries go to `bronze.quarantine`. Holds "
        "identifiers: bronze access only."),
    # A resource replaces the stored one only when it is newer and different, so
    # re-ingesting old exports never rolls a record back.
    update_when="(t.last_updated IS NULL OR s.last_updated >= t.last_updated) "
                "AND s.resource <> t.resource",
)

_UTC = pa.timestamp("us", tz="UTC")

NDJSON_LINES = 1_000  # lines per piece of a bulk NDJSON file (~1 MB of Observations)

# Elements through which a resource belongs to a patient's compartment.
PATIENT_LINKS = ("subject", "patient", "beneficiary", "individual")


def _open(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _timestamp(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


# orjson writes compact JSON, so a reference is always this exact byte pattern; rewriting
# the serialized bytes is ~10x cheaper than walking every resource's tree in Python.
_URN_REFERENCE = b'"reference":"urn:uuid:'


def _targets(refs: dict[str, str]) -> dict[bytes, bytes]:
    """A Bundle's urn:uuid fullUrls as they appear serialized (without the `urn:uuid:`
    prefix and quotes) → the serialized `"reference":"Type/id"` that replaces them."""
    return {orjson.dumps(url)[10:-1]: b'"reference":' + orjson.dumps(target)
            for url, target in refs.items() if url.startswith("urn:uuid:")}


def _resolve(raw: bytes, targets: dict[bytes, bytes], strict: bool = False) -> bytes:
    """Rewrite every `reference` that is a Bundle-local urn:uuid to `Type/id`. Splitting
    on the pattern finds them at C speed; each piece then starts with a fullUrl that
    runs to the next quote (one JSON string: a quote inside it would be escaped).
    `strict`: JSON as received rather than as orjson writes it, where a reference with
    an escape in it may name a fullUrl written otherwise; `_Unusual` then."""
    if not targets or _URN_REFERENCE not in raw:
        return raw
    pieces = raw.split(_URN_REFERENCE)
    out, get = [pieces[0]], targets.get
    for piece in pieces[1:]:
        end = piece.find(b'"')
        target = get(piece[:end])
        if target is None:  # not one of this Bundle's entries: kept as it was
            if strict and b"\\" in piece[:end]:
                raise _Unusual
            out += (_URN_REFERENCE, piece)
        else:
            out += (target, piece[end + 1:])
    return b"".join(out)


def patient_ref(resource: dict, refs: dict[str, str] | None = None) -> str | None:
    """`Patient/<id>` of the patient whose compartment holds the resource; `refs` maps a
    Bundle's urn:uuid fullUrls to `Type/id`."""
    links = (resource.get(link) for link in PATIENT_LINKS)
    return _compartment(resource.get("resourceType"), resource.get("id"),
                        (ref.get("reference") for ref in links if isinstance(ref, dict)), refs)


def _compartment(resource_type, resource_id, references, refs: dict[str, str] | None) -> str | None:
    """`patient_ref` from the resource's type, id and its patient links' references."""
    if resource_type == "Patient":
        return f"Patient/{resource_id}"
    for value in references:
        if isinstance(value, str):
            if refs and value in refs:
                value = refs[value]
            if value.startswith("Patient/"):
                return value
    return None


def _last_updated(resource: dict):
    meta = resource.get("meta")
    return meta.get("lastUpdated") if isinstance(meta, dict) else None


class Columns(Batch):
    """Rows of `bronze.fhir_resources` gathered column by column: many files' resources
    become one Arrow table at the flush, without a Python dict or str per resource."""

    def __init__(self):
        self.types: list[str] = []
        self.ids: list[str] = []
        self.patients: list[str | None] = []
        self.updated: list[str | None] = []
        # serialized resources: runs joined by newlines, or string arrays already cut
        self.raws: list[bytes | pa.Array] = []

    def add(self, resource: dict) -> None:
        """One checked resource, serialized as it is. Bulk NDJSON adds each line's
        resource as soon as it is parsed, while it is fresh in the CPU cache: gathering
        thousands first and walking them column by column ran half as fast again."""
        self.types.append(resource["resourceType"])
        self.ids.append(str(resource["id"]))
        self.patients.append(patient_ref(resource))
        self.updated.append(_last_updated(resource))
        self.raws.append(orjson.dumps(resource))

    def extend(self, resources: list[dict], refs: dict[str, str]) -> None:
        """A Bundle's checked resources, their references resolved through `refs`; their
        JSON follows in one run (`add_serialized`)."""
        self.types += [r["resourceType"] for r in resources]
        self.ids += [str(r["id"]) for r in resources]
        self.patients += [patient_ref(r, refs) for r in resources]
        self.updated += map(_last_updated, resources)

    def add_serialized(self, run: bytes) -> None:
        """The JSON of resources added without it, in their order, joined by newlines."""
        self.raws.append(run)

    def add_head(self, head: "_Head", raw: bytes) -> None:
        """One bulk-export resource read by the fast path: its head, and its JSON as received."""
        self.types.append(head.resourceType)
        self.ids.append(head.id)
        self.patients.append(_compartment(head.resourceType, head.id, _head_links(head), None))
        self.updated.append(head.meta.lastUpdated if head.meta is not None else None)
        self.raws.append(raw)

    def __len__(self) -> int:
        return len(self.types)

    @classmethod
    def arrow(cls, batches: list["Columns"]) -> pa.Table:
        whole = cls()
        for b in batches:
            whole.types += b.types
            whole.ids += b.ids
            whole.patients += b.patients
            whole.updated += b.updated
            whole.raws += b.raws
        return whole.table()

    def table(self) -> pa.Table:
        return pa.table({
            "resource_type": pa.array(self.types, pa.string()),
            "resource_id": pa.array(self.ids, pa.string()),
            "patient_ref": pa.array(self.patients, pa.string()),
            "last_updated": _timestamps(self.updated),
            "resource": _strings(self.raws),
        })


def _timestamps(values: list) -> pa.Array:
    """FHIR instants → UTC timestamps, vectorized; a value Arrow cannot read (a bare
    date, a typo) is read on its own, and becomes NULL if it is no timestamp at all."""
    strings = [v if isinstance(v, str) else None for v in values]
    try:
        return pc.cast(pa.array(strings, pa.string()), _UTC)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([_timestamp(v) for v in strings], _UTC)


def _strings(runs: list[bytes | pa.Array]) -> pa.Array | pa.ChunkedArray:
    """Serialized JSON (valid UTF-8, compact: never a raw newline) → one string array.
    Runs joined by newlines are joined once more and split by Arrow, so no Python object
    is made per resource; arrays already cut (`_cut`) are taken as they are."""
    parts = []
    for cut, group in groupby(runs, key=lambda run: isinstance(run, pa.Array)):
        parts += list(group) if cut else [_split(b"\n".join(group))]
    if not parts:
        return pa.array([], pa.string())
    if sum(p.nbytes for p in parts) >= 2**31:  # beyond 32-bit offsets: keep them apart
        return pa.chunked_array([c for p in parts for c in getattr(p, "chunks", [p])])
    return pa.concat_arrays(parts)


def _split(data: bytes) -> pa.Array:
    if len(data) >= 2**31:  # beyond 32-bit offsets: let Arrow chunk it
        return pa.chunked_array([pa.array([r.decode() for r in data.split(b"\n")], pa.string())])
    whole = pa.StringArray.from_buffers(1, pa.py_buffer(np.array([0, len(data)], np.int32)),
                                        pa.py_buffer(data))
    return pc.split_pattern(whole, "\n").flatten()


def _cut(raws: list[bytes]) -> pa.Array:
    """Resources' JSON, one bytes each, as a string array cut from one buffer by their
    lengths: cheaper than the newline split where the resources arrive one by one."""
    if not raws:
        return pa.array([], pa.string())
    offsets = np.zeros(len(raws) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, raws), np.int64, len(raws)), out=offsets[1:])
    if offsets[-1] >= 2**31:
        return pa.array([r.decode() for r in raws], pa.string())
    return pa.StringArray.from_buffers(len(raws), pa.py_buffer(offsets.astype(np.int32)),
                                       pa.py_buffer(b"".join(raws)))


def _problem(resource, entry=None) -> str | None:
    """Why `resource` (from Bundle entry `entry`, if any) cannot be stored, if it cannot.
    The caller adds where it is (made only for the rare bad one)."""
    if resource is None and isinstance(entry, dict) and (entry.get("request") or entry.get("response")):
        # A DELETE request or a bare response (batch-response, transaction-response)
        # carries no resource to store; say so rather than drop it quietly.
        what = (entry.get("request") or {}).get("method") or "response"
        return (f"Bundle entry is a {what} without a resource, so there is nothing "
                "to store; bronze keeps resources, not requests.")
    if not isinstance(resource, dict):
        return "Entry is not a JSON object, so it is not a FHIR resource."
    if not resource.get("resourceType"):
        return "Resource has no resourceType; every FHIR resource must name its type."
    if not resource.get("id"):
        return (f"{resource['resourceType']} has no id, so it cannot be keyed; "
                "ask the sender to export resources with ids.")
    return None


# ------------------------------------------------------------------ the fast path


# gc=False: these hold no cycles, so the collector need not track the thousands made per file.
class _Reference(msgspec.Struct, gc=False):
    reference: Any = None


class _Meta(msgspec.Struct, gc=False):
    lastUpdated: Any = None


# What a row needs of a resource; msgspec skips (and validates) all the rest.
_Head = msgspec.defstruct("_Head", [
    ("resourceType", Any, None), ("id", Any, None), ("meta", _Meta | None, None),
    *[(link, _Reference | None, None) for link in PATIENT_LINKS]], gc=False)


class _Entry(msgspec.Struct, gc=False):
    fullUrl: Any = None
    resource: msgspec.Raw = msgspec.Raw()  # empty when the entry has none


class _Bundle(msgspec.Struct, gc=False):
    resourceType: Any = None
    entry: list[_Entry] | None = None


_HEAD = msgspec.json.Decoder(_Head)
_BUNDLE = msgspec.json.Decoder(_Bundle)


class _Unusual(Exception):
    """Input the fast path does not vouch for: the general path takes it."""


def _head_links(head) -> Iterator:
    for link in PATIENT_LINKS:
        ref = getattr(head, link)
        if ref is not None:
            yield ref.reference


def _head(raw) -> _Head:
    """A resource's head; `_Unusual` unless it has a string type and id (the general path
    then says what is wrong), or if its bytes are not UTF-8 (msgspec does not check the
    strings it skips)."""
    head = _HEAD.decode(raw)
    if not (type(head.resourceType) is str and head.resourceType and type(head.id) is str and head.id):
        raise _Unusual
    return head


def _utf8(data: bytes) -> bool:
    if data.isascii():  # the usual case, and far cheaper than decoding
        return True
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _compact(text: bytes) -> bool:
    """Whether a file has no whitespace between JSON tokens around references: no line
    breaks or tabs (which JSON strings cannot hold raw) and no spaced `"reference"`. Only
    then is every reference in the `_URN_REFERENCE` form `_resolve` rewrites."""
    body = text.rstrip()
    return not (b"\n" in body or b"\r" in body or b"\t" in body
                or b'"reference" ' in body or b'"reference": ' in body)


def _fast_bundle(text: bytes) -> Columns | None:
    """A compact Bundle's rows, or None when it needs the general path."""
    if not _compact(text) or not _utf8(text):
        return None
    try:
        bundle = _BUNDLE.decode(text)
        if bundle.resourceType != "Bundle" or not bundle.entry:
            return None
        entries = bundle.entry
        heads = [_head(e.resource) for e in entries]
        refs = {}
        for e, h in zip(entries, heads):
            if e.fullUrl:
                if type(e.fullUrl) is not str:
                    return None
                refs[e.fullUrl] = f"{h.resourceType}/{h.id}"
        run = _resolve(b"\n".join(e.resource for e in entries), _targets(refs), strict=True)
    except (msgspec.MsgspecError, _Unusual):
        return None
    rows = Columns()
    rows.types = [h.resourceType for h in heads]
    rows.ids = [h.id for h in heads]
    rows.patients = [_compartment(h.resourceType, h.id, _head_links(h), refs) for h in heads]
    rows.updated = [h.meta.lastUpdated if h.meta is not None else None for h in heads]
    rows.raws = [run]
    return rows


def _fast_line(line: bytes, rows: Columns) -> bool:
    """Add one NDJSON line's resource by the fast path; False when it needs the general one."""
    try:
        head = _head(line)
    except (msgspec.MsgspecError, _Unusual):
        return False
    if not _utf8(line):
        return False
    rows.add_head(head, line.strip())
    return True


# ------------------------------------------------------------------ the general path


def parse_bundle_or_resource(doc, out: Parsed, rows: Columns) -> None:
    if doc.get("resourceType") != "Bundle":
        error = _problem(doc)
        if error:
            out.problems.append(Problem(error))
        else:
            rows.add(doc)
        return
    kept, refs = [], {}
    for i, e in enumerate(doc.get("entry") or []):
        resource = e.get("resource") if isinstance(e, dict) else None
        error = _problem(resource, e)
        if error:
            out.problems.append(Problem(error, f"#entry={i}"))
            continue
        kept.append(resource)
        if e.get("fullUrl"):
            refs[str(e["fullUrl"])] = f"{resource['resourceType']}/{resource['id']}"
    rows.extend(kept, refs)
    # The Bundle's resources are rewritten in one pass over them joined by newlines, and
    # stay joined: the Arrow column is cut from that run.
    if kept:
        rows.add_serialized(_resolve(b"\n".join(map(orjson.dumps, kept)), _targets(refs)))


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector. orjson allocates a container per JSON object
    and array, and every 700 of them trigger a collection that walks the young objects
    (every tenth, older ones too): with pyarrow and Dagster loaded that took about half
    of `orjson.loads`. Parsed JSON holds no reference cycles, so reference counting
    alone frees it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse(path: Path) -> Parsed | Iterator[Parsed]:
    """A file's rows: a Bundle or resource whole, bulk NDJSON in pieces of NDJSON_LINES
    lines, so that a large export never sits in memory as rows all at once: the engine
    writes what it has buffered every FLUSH_ROWS rows, while the rest is parsed. (Its
    time bound then covers reading the file; orjson's time per line is linear.)"""
    try:
        text = _open(path)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        return Parsed(problems=[Problem(f"File could not be read or decompressed ({e}).")], fatal=True)
    if path.name.endswith((".ndjson", ".ndjson.gz")):
        return _ndjson(text.splitlines())
    with _gc_paused():
        return _json(text)


def _ndjson(lines: list[bytes]) -> Iterator[Parsed]:
    # The collector is paused per piece, not across the yield: the engine's own work
    # between pieces runs with it on.
    for start in range(0, len(lines) or 1, NDJSON_LINES):
        with _gc_paused():
            piece = _ndjson_piece(lines[start:start + NDJSON_LINES], start + 1)
        yield piece


def _ndjson_piece(lines: list[bytes], first: int) -> Parsed:
    """NDJSON lines, the first of them line number `first` of the file."""
    out, rows = Parsed(), Columns()
    for n, line in enumerate(lines, start=first):
        if not line or line.isspace() or _fast_line(line, rows):
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            out.problems.append(Problem(f"Line is not valid JSON ({e}).", f"#line={n}"))
            continue
        error = _problem(doc)
        if error:
            out.problems.append(Problem(error, f"#line={n}"))
        else:
            rows.add(doc)
    # Cut here, on the parsing thread, which waits for the writer at the end of a bulk
    # export anyway; the writer's share is the longer one for NDJSON.
    rows.raws = [_cut(rows.raws)]
    out.rows["bronze.fhir_resources"] = rows
    return out


def _json(text: bytes) -> Parsed:
    """A Bundle, or a single resource."""
    rows = _fast_bundle(text)
    if rows is not None:
        return Parsed(rows={"bronze.fhir_resources": rows})
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        return Parsed(problems=[Problem(f"File is not valid JSON ({e}); it may be truncated, "
                                        "re-export it from the source system.")], fatal=True)
    if not isinstance(doc, dict) or "resourceType" not in doc:
        return Parsed(problems=[Problem("JSON file has no resourceType, so it is not FHIR; "
                                        "move it out of landing/fhir/.")], fatal=True)
    out, rows = Parsed(), Columns()
    parse_bundle_or_resource(doc, out, rows)
    out.rows["bronze.fhir_resources"] = rows
    return out


FHIR = Modality(
    name="fhir",
    patterns=["**/*.json", "**/*.ndjson", "**/*.json.gz", "**/*.ndjson.gz"],
    tables=[FHIR_RESOURCES],
    parse=parse,
)
