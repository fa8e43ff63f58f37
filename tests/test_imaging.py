"""Imaging: de-identification (DICOM PS3.15) and linkage to the EHR, on the lake that the
`demo_home` fixture builds once; linkage counting on a hand-made table."""
import json
import re

import orjson
import pyarrow as pa

from assets.imaging.linkage import IMAGING_REPORT, linkage_counts
from medlake import lake, privacy

# DICOM attributes whose values must never leave bronze (tag → keyword).
PHI_TAGS = {
    "00100010": "PatientName", "00100020": "PatientID", "00100030": "PatientBirthDate",
    "00080080": "InstitutionName", "00080090": "ReferringPhysicianName",
    "00081060": "NameOfPhysiciansReadingStudy", "00080050": "AccessionNumber",
    "00181000": "DeviceSerialNumber", "00081010": "StationName",
    "0020000D": "StudyInstanceUID", "0020000E": "SeriesInstanceUID",
    "00080018": "SOPInstanceUID", "00200052": "FrameOfReferenceUID",
}


def dicom_phi_values() -> set[str]:
    """Every PHI attribute value in bronze, names also split into their parts."""
    values = set()
    for row in lake.read("bronze.dicom_instances", "SELECT header FROM t").to_pylist():
        header = orjson.loads(row["header"])
        for tag in PHI_TAGS:
            for v in header.get(tag, {}).get("Value", []):
                if isinstance(v, dict):  # a person name: the whole and each part
                    v = v.get("Alphabetic", "")
                    values.update(v.split("^"))
                values.add(str(v))
    return {v for v in values if len(v) >= 4}


def all_deidentified_text() -> str:
    from assets.retrieval.vectors import open_table

    tables = lake.list_tables("silver") + lake.list_tables("gold")
    parts = [json.dumps(lake.read(t).to_pylist(), default=str) for t in tables]
    chunks = open_table().to_arrow().drop_columns(["vector"]).to_pylist()
    parts.append(json.dumps(chunks, default=str))
    return "\n".join(parts)


def test_no_dicom_phi_value_reaches_silver_gold_or_embeddings(demo):
    phi = dicom_phi_values()
    kinds = {k for k in PHI_TAGS.values()}
    assert len(phi) > len(kinds)  # bronze did hold them: there was something to remove
    assert {"silver.imaging_study", "silver.imaging_series", "silver.imaging_instance",
            "gold.imaging_report"} <= set(lake.list_tables("silver") + lake.list_tables("gold"))
    text = all_deidentified_text()
    leaked = sorted(v for v in phi if re.search(rf"(?<![\w.]){re.escape(v)}(?![\w.])", text))
    assert leaked == []


def test_derived_uids_are_the_same_in_every_table_and_recomputation(demo):
    bronze = lake.read("bronze.dicom_instances",
                       "SELECT sop_instance_uid, series_instance_uid, study_instance_uid FROM t")
    # Recomputed here, in another process and engine than dbt's run: the same UIDs.
    expected = {(privacy.derived_uid(r["sop_instance_uid"]),
                 privacy.derived_uid(r["series_instance_uid"]),
                 privacy.derived_uid(r["study_instance_uid"])) for r in bronze.to_pylist()}
    got = {tuple(r.values()) for r in lake.read(
        "silver.imaging_instance", "SELECT instance_uid, series_uid, study_uid FROM t").to_pylist()}
    assert got == expected and len(got) == bronze.num_rows
    studies = {s for _, _, s in expected}
    series = {s for _, s, _ in expected}
    col = lambda table, c: set(lake.read(table, f"SELECT {c} FROM t").column(0).to_pylist())
    assert col("silver.imaging_study", "study_uid") == studies
    assert col("silver.imaging_series", "series_uid") == series
    assert col("silver.imaging_series", "study_uid") == studies
    assert col("gold.imaging_report", "study_uid") == studies
    assert all(re.fullmatch(r"2\.25\.\d+", u) and len(u) <= 64 for u in studies | series)


def test_generated_sample_links_every_study_to_a_person_and_a_report(demo):
    generated = json.loads((demo / "generated.json").read_text())
    counts = linkage_counts()
    assert counts["dicom_studies"] == generated["imaging_studies"] > 0
    assert counts["reports"] == counts["dicom_studies"]
    assert counts["studies_without_report"] == counts["studies_without_ehr_person"] \
        == counts["reports_without_dicom_study"] == 0
    people = set(lake.read("silver.patient", "SELECT person_key FROM t").column(0).to_pylist())
    rows = lake.read(IMAGING_REPORT).to_pylist()
    for r in rows:
        assert r["person_key"] in people
        assert r["text"] and r["conclusion"] and r["modality"] and r["body_part"]
        assert r["batch_id"] and re.fullmatch(r"[0-9a-f]{64}", r["source_sha256"])
    # The report is the same document retrieval reads from silver.document.
    docs = set(lake.read("silver.document", "SELECT document_id FROM t").column(0).to_pylist())
    assert {r["report_id"] for r in rows} <= docs
    # Studies per modality in patient_360 add up to the person's studies.
    for p in lake.read("gold.patient_360").to_pylist():
        by_modality = dict(p["imaging_studies_by_modality"] or [])
        assert sum(by_modality.values()) == p["imaging_studies"]


def test_linkage_counts_name_each_kind_of_unlinked_row(home):
    rows = [  # linked; DICOM without report; report without DICOM; study of an unknown MRN
        dict(study_uid="2.25.1", has_dicom=True, has_report=True, person_key="p", person_in_ehr=True),
        dict(study_uid="2.25.2", has_dicom=True, has_report=False, person_key="p", person_in_ehr=True),
        dict(study_uid="2.25.3", has_dicom=False, has_report=True, person_key="p", person_in_ehr=True),
        dict(study_uid="2.25.4", has_dicom=True, has_report=True, person_key="q", person_in_ehr=False),
    ]
    lake.merge(IMAGING_REPORT, pa.Table.from_pylist(rows), ["study_uid"])
    assert linkage_counts() == dict(dicom_studies=3, reports=3, studies_without_report=1,
                                    studies_without_ehr_person=1, reports_without_dicom_study=1)


def test_fast_header_reader_gives_pydicoms_json_or_hands_the_file_over(tmp_path, monkeypatch):
    """The byte-level header reader, on pydicom's corpus and a generated file with empty
    value components: every file it reads gives exactly the JSON model of the pydicom
    path; every other file is handed over (`_Unusual`), never misread. Read again, with
    repeated values from its cache of converted values (a small one, cleared often),
    each file gives the same JSON."""
    from pathlib import Path

    import pydicom

    from assets.imaging import dicom

    corpus = Path(pydicom.__file__).parent / "data" / "test_files"
    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.6.1", "1.2.3.4"
    ds.Modality, ds.PatientName, ds.PixelSpacing = "US", "Doe^Jane", [0.5, 0.25]
    ds.Rows, ds.StudyDate, ds.ImageComments = 480, "20240102", "  leading spaces kept"
    ds.TransducerData = ["C5-1", "", ""]  # empty components, as the generator writes
    ds.ImageType = ["ORIGINAL", "", "AXIAL"]
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.save_as(tmp_path / "empty-components.dcm", enforce_file_format=True)
    read = {}
    for path in [tmp_path / "empty-components.dcm",
                 *sorted(p for p in corpus.rglob("*") if p.is_file())]:
        data = path.read_bytes()
        try:
            doc, meta = dicom.fast_header(data, complete=True)
        except dicom._Unusual:
            continue
        read[path] = doc
        ds = dicom.read_header(path)
        assert doc == dicom.header_json(ds), path.name
        assert meta[0x00020010] == str(ds.file_meta.TransferSyntaxUID), path.name
        if path.name == "empty-components.dcm":
            assert doc["00185010"]["Value"] == ["C5-1", "", ""]
    assert tmp_path / "empty-components.dcm" in read
    assert len(read) > 80  # the common layout really takes this path
    monkeypatch.setattr(dicom, "_SEEN_MAX", 64)
    for path, doc in read.items():
        assert dicom.fast_header(path.read_bytes(), complete=True)[0] == doc, path.name


def test_image_occurrence_has_every_linked_series_with_its_procedure_and_visit(demo):
    """OMOP imaging extension: one row per series, each pointing at a procedure and visit
    that exist in the OMOP tables, and at the same person as its study."""
    series = lake.read("silver.imaging_series", "SELECT series_uid, person_key FROM t").to_pylist()
    rows = lake.read("gold.image_occurrence").to_pylist()
    assert len(rows) == len(series) > 0  # the generated sample links every study
    assert {r["image_series_uid"] for r in rows} == {s["series_uid"] for s in series}
    ids = lambda table, c: set(lake.read(table, f"SELECT {c} FROM t").column(0).to_pylist())  # noqa: E731
    procedures = lake.read("gold.procedure_occurrence",
                           "SELECT procedure_occurrence_id, person_id, visit_occurrence_id FROM t").to_pylist()
    by_id = {p["procedure_occurrence_id"]: p for p in procedures}
    visits = ids("gold.visit_occurrence", "visit_occurrence_id")
    for r in rows:
        procedure = by_id[r["procedure_occurrence_id"]]
        assert procedure["person_id"] == r["person_id"]
        assert r["visit_occurrence_id"] == procedure["visit_occurrence_id"] and r["visit_occurrence_id"] in visits
        assert r["image_occurrence_date"] and r["modality_source_value"]
        assert r["wadors_uri"] is None and r["local_path"] is None
    assert len({r["image_occurrence_id"] for r in rows}) == len(rows)
    # The generator writes no Procedure for an exam, so each study became one procedure.
    studies = ids("silver.imaging_study_fhir", "imaging_study_id")
    assert studies <= ids("gold.procedure_occurrence", "procedure_id")
