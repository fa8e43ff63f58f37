"""Deliberately broken landing files, to exercise quarantine.

Real feeds deliver truncated uploads, files from the wrong system, resources
missing mandatory fields, corrupt DICOM and malformed VCF lines. Ingestion must
route each of these to bronze.quarantine with a clear error instead of failing
the run or dropping them silently. Everything here is derived from the run's
rng, so the broken files are byte-identical across runs too.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson
from faker import Faker
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian

from medlake.generate import fhir, vcf
from medlake.generate import model as m
from medlake.generate.dicom import IMPLEMENTATION_CLASS_UID
from medlake.generate.patient import simulate
from medlake.generate.util import new_uid

BAD_MRN_RANGE = (90_000_000, 99_999_999)  # generated patients use 10_000_000..89_999_999


def write_bad_files(landing: Path, rng: random.Random, fake: Faker, staff: list[m.Clinician]) -> list[Path]:
    """Write all broken files; returns their paths in a fixed order."""
    (landing / "fhir").mkdir(parents=True, exist_ok=True)
    (landing / "dicom" / "bad").mkdir(parents=True, exist_ok=True)
    (landing / "vcf").mkdir(parents=True, exist_ok=True)
    return [
        _truncated_bundle(landing / "fhir" / "bad-truncated.json", rng, fake, staff),
        _not_fhir(landing / "fhir" / "bad-not-fhir.json", rng),
        _missing_id_bundle(landing / "fhir" / "bad-resource-missing-id.json", rng, fake, staff),
        _corrupt_dicom(landing / "dicom" / "bad" / "corrupt.dcm", rng),
        _not_dicom(landing / "dicom" / "bad" / "not-dicom.dcm"),
        _malformed_vcf(landing / "vcf" / "bad-malformed.vcf", rng),
    ]


def _bad_patient(rng: random.Random, fake: Faker, staff) -> m.Patient:
    """A complete simulated patient with an MRN outside the range of the real cohort."""
    seed = rng.getrandbits(64)
    p = simulate(0, f"MRN{rng.randint(*BAD_MRN_RANGE)}", random.Random(seed), fake, staff)
    p.seed = seed
    return p


def _truncated_bundle(path: Path, rng: random.Random, fake: Faker, staff) -> Path:
    """A real bundle cut off part-way, as an interrupted upload leaves it: invalid JSON."""
    data = orjson.dumps(fhir.transaction_bundle(fhir.build_resources(_bad_patient(rng, fake, staff))))
    path.write_bytes(data[: int(len(data) * rng.uniform(0.4, 0.7))])
    return path


def _not_fhir(path: Path, rng: random.Random) -> Path:
    """Valid JSON from a lab analyser export, dropped into the FHIR folder by mistake."""
    analytes = (("WBC", "10*3/uL", 4.0, 11.0), ("RBC", "10*6/uL", 4.2, 5.9), ("HGB", "g/dL", 12.0, 17.5),
                ("PLT", "10*3/uL", 150, 400))
    results = [{"sampleBarcode": f"B{rng.randint(10_000_000, 99_999_999)}", "analyte": a,
                "value": round(rng.uniform(lo, hi), 1), "unit": u, "flag": ""}
               for _ in range(3) for a, u, lo, hi in analytes]
    export = {"instrument": "Sysmex XN-1000", "serial": f"XN{rng.randint(10000, 99999)}",
              "exportedAt": "2025-12-30T23:15:00Z", "operator": "lab-tech-07", "results": results}
    path.write_bytes(orjson.dumps(export, option=orjson.OPT_INDENT_2))
    return path


def _missing_id_bundle(path: Path, rng: random.Random, fake: Faker, staff) -> Path:
    """A valid transaction Bundle where one resource lacks `id` and another lacks `resourceType`.

    The Patient (with its own MRN), the Encounter and the remaining resources
    of the first visit are fine and should still be ingested.
    """
    p = _bad_patient(rng, fake, staff)
    first = p.encounters[0]
    keep = {first.id} | {o.id for o in p.observations if o.encounter is first}
    resources = [r for r in fhir.build_resources(p)
                 if r["resourceType"] == "Patient" or r["id"] in keep]
    bundle = fhir.transaction_bundle(resources)
    observations = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    del observations[0]["id"]
    del observations[1]["resourceType"]
    path.write_bytes(orjson.dumps(bundle))
    return path


def _corrupt_dicom(path: Path, rng: random.Random) -> Path:
    """Preamble, 'DICM' and a file meta announcing Deflated Explicit VR, then garbage bytes.

    pydicom happily reads random bytes as elements, so plain garbage is not
    reliably broken; a deflate stream whose first block type is invalid (0x07)
    makes every reader fail while inflating the dataset.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = new_uid(rng)
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_file_meta_info(buf, meta, enforce_standard=True)
    garbage = bytes(rng.getrandbits(8) for _ in range(256))
    path.write_bytes(b"\x00" * 128 + b"DICM" + buf.getvalue() + b"\x07" + garbage)
    return path


def _not_dicom(path: Path) -> Path:
    """A text file with a .dcm extension (a scanner log saved in the wrong place)."""
    path.write_text("PACS export log\nJob 4471 finished with 0 images.\nThis is not a DICOM file.\n",
                    encoding="ascii", newline="\n")
    return path


def _malformed_vcf(path: Path, rng: random.Random) -> Path:
    """A VCF with a valid header and record, then a record with POS 'abc' and too few columns."""
    header = vcf.header_lines(["S9001"])
    good = vcf.Variant("BRCA2", 32332592, "rs144848", "A", ["C"], ["Benign"],
                       [("missense_variant", "c.1114A>C", "p.Asn372His")], [0.28], 812.4)
    dp = rng.randint(20, 60)
    call = f"0/1:{dp}:99:{dp // 2},{dp - dp // 2}"
    lines = header + [vcf.record_line(good, [call]), "chr17\tabc\t.\tC\tT\t50.0"]
    path.write_text("\n".join(lines) + "\n", encoding="ascii", newline="\n")
    return path
