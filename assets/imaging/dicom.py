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

import orjson
import pyarrow as pa
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.datadict import dictionary_VR
from pydicom.errors import InvalidDicomError

from medlake.ingest import Modality, Parsed, Problem, TableSpec

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


def _number(ds, keyword: str, kind=float):
    text = _text(ds, keyword)
    if text is None:
        return None
    try:
        return kind(float(text.split("\\")[0]))
    except (TypeError, ValueError, OverflowError):
        return None


def _numbers(ds, keyword: str) -> list[float] | None:
    try:
        value = ds.get(keyword)
        values = list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) \
            else [value]
        out = [float(v) for v in values if v not in (None, "")]
    except (TypeError, ValueError, OverflowError):
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
    vr = raw.VR
    if not vr:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = "UN"
    return {"vr": vr, "BulkDataURI": OMITTED}


def header_json(ds: pydicom.Dataset) -> str:
    """The DICOM JSON model of `ds`. Deferred and large raw values are marked as omitted
    without being read from disk; elements pydicom cannot convert are left out."""
    doc = {}
    for tag in ds.keys():
        raw = ds.get_item(tag)
        key = f"{int(tag):08X}"
        if isinstance(raw, RawDataElement) and (raw.value is None or raw.length > BULK_THRESHOLD):
            doc[key] = _omitted(tag, raw)
            continue
        try:
            doc[key] = ds[tag].to_json_dict(bulk_data_element_handler=lambda elem: OMITTED,
                                            bulk_data_threshold=BULK_THRESHOLD)
        except Exception:
            continue
    return orjson.dumps(doc).decode()


def read_header(path: Path) -> pydicom.FileDataset:
    """Header only, large values deferred. Files without the Part-10 preamble are read
    again with `force` (real archives hold such files)."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, defer_size=BULK_THRESHOLD)
    except InvalidDicomError:
        ds = pydicom.dcmread(path, stop_before_pixels=True, defer_size=BULK_THRESHOLD,
                             force=True)
        if not _text(ds, "SOPInstanceUID"):
            raise
        return ds


def _not_dicom(e: Exception) -> Parsed:
    if isinstance(e, InvalidDicomError):
        return Parsed(problems=[Problem(
            "Not a DICOM file: it has no DICOM preamble and no readable SOP Instance UID; "
            "move it out of landing/dicom/.")], fatal=True)
    detail = str(e).strip().rstrip(".") or "no detail"
    return Parsed(problems=[Problem(
        f"Not a readable DICOM file ({type(e).__name__}: {detail[:200]}); move it out of "
        "landing/dicom/ or re-export it from the source system.")], fatal=True)


def parse(path: Path) -> Parsed:
    try:
        ds = read_header(path)
    except Exception as e:  # pydicom raises many kinds on bad bytes; all mean "unreadable"
        return _not_dicom(e)
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = pydicom.Dataset()
    sop_class = _text(ds, "SOPClassUID") or _text(meta, "MediaStorageSOPClassUID")
    if sop_class == MEDIA_DIRECTORY or "DirectoryRecordSequence" in ds:
        # A DICOMDIR indexes files that are ingested on their own; it is not an image.
        return Parsed(status="directory")
    sop = _text(ds, "SOPInstanceUID")
    if not sop:
        return Parsed(problems=[Problem("DICOM file has no SOPInstanceUID, so the instance "
                                        "cannot be identified; re-export it with one.")],
                      fatal=True)
    try:
        header = header_json(ds)
        row = dict(
            sop_instance_uid=sop,
            study_instance_uid=_text(ds, "StudyInstanceUID"),
            series_instance_uid=_text(ds, "SeriesInstanceUID"),
            patient_ref=_text(ds, "PatientID"),
            modality=_text(ds, "Modality"),
            study_date=_date(_text(ds, "StudyDate")),
            accession_number=_text(ds, "AccessionNumber"),
            sop_class_uid=sop_class,
            manufacturer=_text(ds, "Manufacturer"),
            body_part=_text(ds, "BodyPartExamined"),
            series_description=_text(ds, "SeriesDescription"),
            header=header,
            manufacturer_model=_text(ds, "ManufacturerModelName"),
            study_description=_text(ds, "StudyDescription"),
            series_number=_number(ds, "SeriesNumber", int),
            instance_number=_number(ds, "InstanceNumber", int),
            rows=_number(ds, "Rows", int),
            columns=_number(ds, "Columns", int),
            pixel_spacing=_numbers(ds, "PixelSpacing"),
            slice_thickness=_number(ds, "SliceThickness"),
            number_of_frames=_number(ds, "NumberOfFrames", int),
            transfer_syntax_uid=_text(meta, "TransferSyntaxUID"),
        )
    except Exception as e:
        return Parsed(problems=[Problem(
            f"DICOM header could not be converted ({type(e).__name__}: {str(e)[:200]}); "
            "the file is damaged or uses an encoding pydicom cannot read.")], fatal=True)
    return Parsed(rows={"bronze.dicom_instances": [row]})


DICOM = Modality(name="dicom", patterns=["**/*"], tables=[DICOM_INSTANCES], parse=parse)
