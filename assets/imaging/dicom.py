"""DICOM files → rows of `bronze.dicom_instances`, headers only.

Pixel data is never decoded: the header is read with `stop_before_pixels`, large values
are deferred (never read from disk), and the header is stored as the DICOM JSON model
(PS3.18 F.2) with bulk values (overlays, waveforms, icons, anything over
`BULK_THRESHOLD` bytes) left out and marked by `BulkDataURI = OMITTED`, so the table
stays small and queryable. Private tags are kept here, in bronze only.

Any file under `landing/dicom/` is a candidate, with or without an extension, as in real
archives. Files without the Part-10 preamble are read once more with `force`, and kept
only if they carry a SOP Instance UID. A DICOMDIR (a media directory, not an image) is
recognised and logged as a directory, not stored as an instance.
"""
from __future__ import annotations

from datetime import date
from pathlib import Path

import base64
import struct
from typing import TYPE_CHECKING

import orjson
import pyarrow as pa

from medlake.ingest import HEAD_BYTES, Modality, Parsed, Problem, TableSpec

if TYPE_CHECKING:
    # Imported where used: only files off the byte-level path need pydicom, and a pool
    # worker that never meets one is spared its import (~0.3 s of CPU).
    import pydicom
    from pydicom.dataelem import RawDataElement

BULK_THRESHOLD = 4096  # bytes; larger values (overlays, waveforms, icons) are left out
OMITTED = "medlake:omitted-bulk-data"
MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage: a DICOMDIR

DICOM_INSTANCES = TableSpec(
    name="bronze.dicom_instances",
    schema=pa.schema([
        ("sop_instance_uid", pa.string()), ("study_instance_uid", pa.string()),
        ("series_instance_uid", pa.string()), ("patient_ref", pa.string()),
        ("modality", pa.string()), ("study_date", pa.date32()),
        ("accession_number", pa.string()), ("sop_class_uid", pa.string()),
        ("manufacturer", pa.string()), ("body_part", pa.string()),
        ("series_description", pa.string()), ("header", pa.string()),
        ("source_uri", pa.string()), ("source_sha256", pa.string()),
        ("batch_id", pa.string()), ("ingested_at", pa.timestamp("us", tz="UTC")),
        ("manufacturer_model", pa.string()), ("study_description", pa.string()),
        ("series_number", pa.int64()), ("instance_number", pa.int64()),
        ("rows", pa.int64()), ("columns", pa.int64()),
        ("pixel_spacing", pa.list_(pa.float64())), ("slice_thickness", pa.float64()),
        ("number_of_frames", pa.int64()), ("transfer_syntax_uid", pa.string()),
    ]),
    keys=["sop_instance_uid"],
    description=(
        "DICOM headers from every file under `landing/dicom/`, one row per SOP instance. "
        "Pixel data is never read; the header is kept as the DICOM JSON model with bulk "
        "values omitted and marked. Unreadable files go to `bronze.quarantine`; DICOMDIR "
        "files are logged as directories. Holds PHI and private tags."),
    update_when="s.header <> t.header",
)


def _text(ds, keyword: str) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:  # a malformed value of one attribute must not sink the file
        return None
    if value is None or value == "":
        return None
    return str(value).strip().strip("\x00") or None


# Columns are read from the JSON model already built (cheaper than asking pydicom again).
def _first(doc: dict, tag: str):
    values = doc.get(tag, {}).get("Value") or [None]
    return values[0]


def _str(doc: dict, tag: str) -> str | None:
    value = _first(doc, tag)
    if value is None or isinstance(value, dict):
        return None
    return str(value).strip().strip("\x00") or None


def _num(doc: dict, tag: str, kind=float):
    value = _first(doc, tag)
    try:
        return None if value is None else kind(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def _nums(doc: dict, tag: str) -> list[float] | None:
    try:
        out = [float(v) for v in doc.get(tag, {}).get("Value") or [] if v is not None]
    except (TypeError, ValueError):
        return None
    return out or None


def _date(value: str | None) -> date | None:
    if not value or len(value) < 8 or not value[:8].isdigit():
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None


def _omitted(tag, raw: RawDataElement) -> dict:
    from pydicom.datadict import dictionary_VR

    vr = raw.VR
    if not vr:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = "UN"
    return {"vr": vr, "BulkDataURI": OMITTED}


# The DICOM JSON model straight from raw element bytes, for the common VRs: converting
# each value through pydicom's element classes costs ~3x the header read itself, and
# this runs for every file. Anything unusual falls back to pydicom (see `_raw_json`).
_TEXT = {"LT", "ST", "UT", "UR"}  # single-valued, leading spaces significant
_STRINGS = {"AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UC", "UI"} | _TEXT
_BINARY = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "SV": "q",
           "UV": "Q"}
_BYTES = {"OB", "OW", "OF", "OD", "OL", "OV"}  # not UN: pydicom may know the real VR


def _raw_json(raw: RawDataElement, little_endian: bool) -> dict | None:
    """JSON for one raw element, or None where pydicom must decide (implicit VR,
    non-ASCII text needing the character set, odd numbers, empty components)."""
    return _value_json(raw.VR, raw.value, little_endian)


def _value_json(vr: str | None, value: bytes | None, little_endian: bool) -> dict | None:
    if vr not in _BINARY and vr not in _BYTES and vr not in _STRINGS | {"PN", "DS", "IS"}:
        return None
    if not value:
        return {"vr": vr}
    if vr in _BINARY:
        fmt = _BINARY[vr]
        size = struct.calcsize(fmt)
        if len(value) % size:
            return None
        items = struct.unpack(f"{'<' if little_endian else '>'}{len(value) // size}{fmt}", value)
        if vr in ("FL", "FD") and any(v != v or v in (float("inf"), float("-inf")) for v in items):
            return None  # NaN / infinity are not JSON numbers
        return {"vr": vr, "Value": list(items)}
    if vr in _BYTES:
        return {"vr": vr, "InlineBinary": base64.b64encode(value).decode()}
    if not value.isascii():
        return None
    if vr in _TEXT:
        text = value.decode("ascii").rstrip(" \x00")
        return {"vr": vr, "Value": [text]} if text else {"vr": vr}
    parts = value.decode("ascii").strip(" \x00").split("\\")
    if parts == [""]:
        return {"vr": vr}
    if "" in parts and vr in ("PN", "DS", "IS"):
        return None  # empty components: pydicom's conversion decides
    if vr == "PN":
        values = []
        for p in parts:
            groups = dict(zip(("Alphabetic", "Ideographic", "Phonetic"), p.split("=")))
            values.append({k: v for k, v in groups.items() if v})
        return {"vr": vr, "Value": values}
    if vr in ("DS", "IS"):
        try:
            numbers = [float(p) if vr == "DS" else int(p) for p in parts]
        except ValueError:
            return None
        if vr == "DS" and any(v != v or v in (float("inf"), float("-inf")) for v in numbers):
            return None
        return {"vr": vr, "Value": numbers}
    return {"vr": vr, "Value": parts}


def header_json(ds: pydicom.Dataset) -> dict:
    """The DICOM JSON model of `ds`, as a dict. Deferred and large raw values are marked as omitted
    without being read from disk; elements pydicom cannot convert are left out."""
    from pydicom.dataelem import RawDataElement

    doc = {}
    little_endian = getattr(ds, "original_encoding", (None, True))[1] is not False
    for tag in ds.keys():
        raw = ds.get_item(tag)
        key = f"{int(tag):08X}"
        if isinstance(raw, RawDataElement):
            if raw.value is None or raw.length > BULK_THRESHOLD:
                doc[key] = _omitted(tag, raw)
                continue
            fast = _raw_json(raw, little_endian)
            if fast is not None:
                doc[key] = fast
                continue
        try:
            doc[key] = ds[tag].to_json_dict(bulk_data_element_handler=lambda elem: OMITTED,
                                            bulk_data_threshold=BULK_THRESHOLD)
        except Exception:
            continue
    return doc


# Reading the header ourselves: for the common file (Part-10 preamble, explicit VR
# little endian, no sequence, ASCII text) a walk over the bytes with struct costs a
# fraction of `dcmread`, which builds a Dataset of element objects we would only turn
# into JSON again. Anything else raises `_Unusual` and takes the pydicom path, which
# gives the same JSON (tests/test_imaging.py holds the two to each other on pydicom's
# corpus).
_PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}  # where stop_before_pixels stops
_LONG_LENGTH = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR",
                b"UT", b"SV", b"UV"}
_SHORT_LENGTH = {v.encode() for v in _STRINGS | set(_BINARY) | {"PN", "DS", "IS", "AT"}}
# Transfer syntaxes whose data set is not explicit VR little endian (or is deflated).
_NOT_EXPLICIT_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
                    "1.2.840.10008.1.2.4.95"}


class _Unusual(Exception):
    """The file needs pydicom's reader."""


def _elements(data: bytes, pos: int, complete: bool, group: int | None = None):
    """(tag, VR, value, next position) of explicit VR little endian elements from `pos`,
    up to pixel data, the end of the file, or (with `group`) the first tag of another
    group. `data` is the file's first bytes, all of them when `complete`."""
    unpack, end = struct.unpack_from, len(data)
    while pos + 8 <= end:
        g, e = unpack("<HH", data, pos)
        if group is not None and g != group:
            return
        tag = g << 16 | e
        if tag in _PIXEL_TAGS:
            return
        vr = data[pos + 4:pos + 6]
        if vr in _LONG_LENGTH:
            if pos + 12 > end:
                raise _Unusual
            length, pos = unpack("<L", data, pos + 8)[0], pos + 12
        elif vr in _SHORT_LENGTH:
            length, pos = unpack("<H", data, pos + 6)[0], pos + 8
        else:
            raise _Unusual  # an unknown VR: pydicom may read it as implicit
        if vr == b"SQ" or length == 0xFFFFFFFF or pos + length > end:
            raise _Unusual  # sequences, undefined lengths, values past the bytes read
        yield tag, vr.decode(), data[pos:pos + length], pos + length
        pos += length
    if pos != end or not complete:
        raise _Unusual  # trailing bytes, or a header longer than the bytes read


# Repeated values (a series shares most of its header) convert once: (VR, bytes) -> JSON.
# The JSON objects are shared between documents, which are only read and serialized.
_SEEN: dict[tuple[bytes, bytes], dict] = {}
_SEEN_MAX = 8192  # entries; cleared when full, so unique values (UIDs) cannot crowd it
_SEEN_BYTES = 64  # longer values are converted each time (memory stays a few MB)
_KEYS: dict[int, str] = {}  # tag -> its JSON key


def fast_header(data: bytes, complete: bool) -> tuple[dict, dict]:
    """(JSON model, file meta {tag: text}) of a file's first bytes (`complete` when that
    is the whole file), read without pydicom; raises `_Unusual` where pydicom must read.
    The data set's loop is `_elements` and `_value_json` inlined (this runs ~60 times a
    file), with repeated values looked up instead of converted again."""
    if data[128:132] != b"DICM":
        raise _Unusual
    meta, pos = {}, 132
    for tag, vr, value, pos in _elements(data, 132, complete, group=2):
        if vr in ("UI", "SH", "AE") and value.isascii():
            meta[tag] = value.decode("ascii").strip(" \x00") or None
    ts = meta.get(0x00020010)
    if not ts or ts in _NOT_EXPLICIT_LE:
        raise _Unusual
    doc = {}
    unpack, end, seen, keys = struct.unpack_from, len(data), _SEEN, _KEYS
    while pos + 8 <= end:
        g, e, vr, length = unpack("<HH2sH", data, pos)
        tag = g << 16 | e
        if tag in _PIXEL_TAGS:
            break
        if vr in _LONG_LENGTH:
            if pos + 12 > end:
                raise _Unusual
            length, pos = unpack("<L", data, pos + 8)[0], pos + 12
            if vr == b"SQ" or length == 0xFFFFFFFF:
                raise _Unusual  # sequences, undefined lengths
        elif vr in _SHORT_LENGTH:
            pos += 8
        else:
            raise _Unusual  # an unknown VR: pydicom may read it as implicit
        if pos + length > end:
            raise _Unusual  # a value past the bytes read
        key = keys.get(tag)
        if key is None:
            key = keys[tag] = f"{tag:08X}"
        if length > BULK_THRESHOLD:
            doc[key] = {"vr": vr.decode(), "BulkDataURI": OMITTED}
            pos += length
            continue
        value = data[pos:pos + length]
        pos += length
        fast = seen.get((vr, value)) if length <= _SEEN_BYTES else None
        if fast is None:
            fast = _value_json(vr.decode(), value, True)
            if fast is None:
                raise _Unusual
            if length <= _SEEN_BYTES:
                if len(seen) >= _SEEN_MAX:
                    seen.clear()
                seen[(vr, value)] = fast
        doc[key] = fast
    else:
        if pos != end or not complete:
            raise _Unusual  # trailing bytes, or a header longer than the bytes read
    return doc, meta


def read_header(path: Path) -> pydicom.FileDataset:
    """Header only, large values deferred. Files without the Part-10 preamble are read
    again with `force` (real archives hold such files)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, defer_size=BULK_THRESHOLD)
    except InvalidDicomError:
        ds = pydicom.dcmread(path, stop_before_pixels=True, defer_size=BULK_THRESHOLD,
                             force=True)
        if not _text(ds, "SOPInstanceUID"):
            raise
        return ds


def _not_dicom(e: Exception) -> Parsed:
    from pydicom.errors import InvalidDicomError

    if isinstance(e, InvalidDicomError):
        return Parsed(problems=[Problem(
            "Not a DICOM file: it has no DICOM preamble and no readable SOP Instance UID; "
            "move it out of landing/dicom/.")], fatal=True)
    detail = str(e).strip().rstrip(".") or "no detail"
    return Parsed(problems=[Problem(
        f"Not a readable DICOM file ({type(e).__name__}: {detail[:200]}); move it out of "
        "landing/dicom/ or re-export it from the source system.")], fatal=True)


def _read(path: Path, data: bytes, complete: bool) -> tuple[dict, str | None, str | None]:
    """(JSON model, transfer syntax, media SOP class) of a file's header, from its
    first bytes where they suffice."""
    try:
        doc, meta = fast_header(data, complete)
        return doc, meta.get(0x00020010), meta.get(0x00020002)
    except (_Unusual, struct.error, UnicodeDecodeError):
        pass
    import pydicom

    ds = read_header(path)
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = pydicom.Dataset()
    return (header_json(ds), _text(meta, "TransferSyntaxUID"),
            _text(meta, "MediaStorageSOPClassUID"))


def parse(path: Path) -> Parsed:
    with open(path, "rb") as f:
        data = f.read(HEAD_BYTES)
        complete = len(data) < HEAD_BYTES or not f.read(1)
    return parse_head(path, data, complete)


def parse_head(path: Path, data: bytes, complete: bool) -> Parsed:
    """`parse`, given the file's first bytes (all of them when `complete`)."""
    try:
        doc, transfer_syntax, media_sop_class = _read(path, data, complete)
    except Exception as e:  # pydicom raises many kinds on bad bytes; all mean "unreadable"
        return _not_dicom(e)
    try:
        sop_class = _str(doc, "00080016") or media_sop_class
        if sop_class == MEDIA_DIRECTORY or "00041220" in doc:
            # A DICOMDIR indexes files that are ingested on their own; not an image.
            return Parsed(status="directory")
        sop = _str(doc, "00080018")
        if not sop:
            return Parsed(problems=[Problem(
                "DICOM file has no SOPInstanceUID, so the instance cannot be identified; "
                "re-export it with one.")], fatal=True)
        row = dict(
            sop_instance_uid=sop,
            study_instance_uid=_str(doc, "0020000D"),
            series_instance_uid=_str(doc, "0020000E"),
            patient_ref=_str(doc, "00100020"),
            modality=_str(doc, "00080060"),
            study_date=_date(_str(doc, "00080020")),
            accession_number=_str(doc, "00080050"),
            sop_class_uid=sop_class,
            manufacturer=_str(doc, "00080070"),
            body_part=_str(doc, "00180015"),
            series_description=_str(doc, "0008103E"),
            header=orjson.dumps(doc).decode(),
            manufacturer_model=_str(doc, "00081090"),
            study_description=_str(doc, "00081030"),
            series_number=_num(doc, "00200011", int),
            instance_number=_num(doc, "00200013", int),
            rows=_num(doc, "00280010", int),
            columns=_num(doc, "00280011", int),
            pixel_spacing=_nums(doc, "00280030"),
            slice_thickness=_num(doc, "00180050"),
            number_of_frames=_num(doc, "00280008", int),
            transfer_syntax_uid=transfer_syntax,
        )
    except Exception as e:
        return Parsed(problems=[Problem(
            f"DICOM header could not be converted ({type(e).__name__}: {str(e)[:200]}); "
            "the file is damaged or uses an encoding pydicom cannot read.")], fatal=True)
    return Parsed(rows={"bronze.dicom_instances": [row]})


# One small row per file, so large chunks: fewer Delta commits.
DICOM = Modality(name="dicom", patterns=["**/*"], tables=[DICOM_INSTANCES], parse=parse,
                 chunk_files=5000, parse_head=parse_head)
