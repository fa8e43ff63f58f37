"""DICOM files → rows of `bronze.dicom_instances`, headers only.

Pixel data is never decoded: the header is read with `stop_before_pixels` and stored as
the DICOM JSON model (PS3.18 F.2), with bulk values left out and marked by a
`BulkDataURI`, so the table stays small and queryable.
"""
from __future__ import annotations

from datetime import date
from pathlib import Path

import orjson
import pyarrow as pa
import pydicom
from pydicom.errors import InvalidDicomError

from medlake.ingest import Modality, Parsed, Problem, TableSpec

BULK_THRESHOLD = 4096  # bytes; larger values (overlays, waveforms, icons) are left out
OMITTED = "medlake:omitted-bulk-data"

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
    ]),
    keys=["sop_instance_uid"],
    description=(
        "DICOM headers from `landing/dicom/**/*.dcm`, one row per SOP instance. Pixel data "
        "is never read; the header is kept as the DICOM JSON model with bulk values "
        "omitted. Unreadable files go to `bronze.quarantine`. Holds PHI."),
    update_when="s.header <> t.header",
)


def _text(ds, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    return str(value).strip() or None


def _date(value: str | None) -> date | None:
    if not value or len(value) < 8 or not value[:8].isdigit():
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None


def header_json(ds: pydicom.Dataset) -> str:
    doc = ds.to_json_dict(bulk_data_threshold=BULK_THRESHOLD,
                          bulk_data_element_handler=lambda elem: OMITTED,
                          suppress_invalid_tags=True)
    return orjson.dumps(doc).decode()


def parse(path: Path) -> Parsed:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, ValueError, OSError, KeyError, TypeError) as e:
        return Parsed(problems=[Problem(f"Not a readable DICOM file ({type(e).__name__}: {e}); "
                                        "move it out of landing/dicom/ or re-export it.")],
                      fatal=True)
    sop = _text(ds, "SOPInstanceUID")
    if not sop:
        return Parsed(problems=[Problem("DICOM file has no SOPInstanceUID, so the instance "
                                        "cannot be identified.")], fatal=True)
    try:
        header = header_json(ds)
    except Exception as e:
        return Parsed(problems=[Problem(f"DICOM header could not be converted to JSON ({e}).")],
                      fatal=True)
    row = dict(
        sop_instance_uid=sop,
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        patient_ref=_text(ds, "PatientID"),
        modality=_text(ds, "Modality"),
        study_date=_date(_text(ds, "StudyDate")),
        accession_number=_text(ds, "AccessionNumber"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        manufacturer=_text(ds, "Manufacturer"),
        body_part=_text(ds, "BodyPartExamined"),
        series_description=_text(ds, "SeriesDescription"),
        header=header,
    )
    return Parsed(rows={"bronze.dicom_instances": [row]})


DICOM = Modality(name="dicom", patterns=["**/*.dcm", "**/*.DCM"], tables=[DICOM_INSTANCES],
                 parse=parse)
