"""Tests for the deterministic sample-data generator (medlake.generate)."""

from __future__ import annotations

import base64
import csv
import gzip
import json
import random
import re
from pathlib import Path

import pydicom
import pytest

from medlake.generate import GenerateResult, generate
from medlake.generate import vcf as vcfmod

N = 5
SEED = 7
MR_SYSTEM = "http://hospital.example.org/mrn"
NOTE_CODES = {"11506-3", "18842-5", "34117-2"}


def _files(root: Path) -> dict[str, bytes]:
    """Every file under root by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One generation with bad files; shared by the read-only checks."""
    landing = tmp_path_factory.mktemp("landing")
    calls: list[int] = []
    result = generate(landing, N, seed=SEED, bad_files=True, progress=calls.append)
    return landing, result, calls


@pytest.fixture(scope="module")
def bundles(run):
    """Parsed patient bundles."""
    landing = run[0]
    return [json.loads(p.read_bytes()) for p in sorted((landing / "fhir").glob("patient-*.json"))]


def _resources(bundles, rtype=None):
    for b in bundles:
        for e in b["entry"]:
            if rtype is None or e["resource"].get("resourceType") == rtype:
                yield e["resource"]


def _mrn(patient: dict) -> str:
    return next(i["value"] for i in patient["identifier"]
                if i["type"]["coding"][0]["code"] == "MR" and i["system"] == MR_SYSTEM)


def _references(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference":
                yield v
            else:
                yield from _references(v)
    elif isinstance(node, list):
        for x in node:
            yield from _references(x)


# ------------------------------------------------------------ determinism


def test_same_seed_is_byte_identical(run, tmp_path):
    landing = run[0]
    again = tmp_path / "again"
    generate(again, N, seed=SEED, bad_files=True)
    assert _files(again) == _files(landing)


def test_rerun_in_place_is_idempotent(tmp_path):
    generate(tmp_path, 3, seed=1, bad_files=True)
    before = _files(tmp_path)
    generate(tmp_path, 3, seed=1, bad_files=True)
    assert _files(tmp_path) == before


def test_different_seed_gives_different_patients(run, tmp_path):
    landing = run[0]
    generate(tmp_path, N, seed=SEED + 1)
    assert (tmp_path / "fhir" / "patient-0001.json").read_bytes() != \
        (landing / "fhir" / "patient-0001.json").read_bytes()
    assert (tmp_path / "vcf" / "cohort.vcf.gz").read_bytes() != (landing / "vcf" / "cohort.vcf.gz").read_bytes()


def test_result_and_progress(run, bundles):
    landing, result, calls = run
    assert isinstance(result, GenerateResult)
    assert calls == list(range(1, N + 1))
    assert result.patients == N and result.fhir_files == N
    assert result.fhir_resources["Patient"] == N
    assert sum(result.fhir_resources.values()) == sum(1 for _ in _resources(bundles))
    dcm = [p for p in (landing / "dicom").rglob("*.dcm") if "bad" not in p.parts]
    assert result.dicom_files == len(dcm)
    assert result.imaging_studies == result.fhir_resources.get("ImagingStudy", 0)
    assert result.notes == result.fhir_resources["DocumentReference"]
    assert result.vcf_files == 3 and 44 <= result.variants <= 84  # cohort + 4-site panel
    assert len(result.bad_files) == 6 and all(p.exists() for p in result.bad_files)


# ------------------------------------------------------------------- FHIR


def test_bundles_are_transactions_with_resolvable_references(bundles):
    assert len(bundles) == N
    for b in bundles:
        assert b["resourceType"] == "Bundle" and b["type"] == "transaction"
        assert b["entry"][0]["resource"]["resourceType"] == "Patient"
        patient_id = b["entry"][0]["resource"]["id"]
        full_urls = {e["fullUrl"] for e in b["entry"]}
        for e in b["entry"]:
            r = e["resource"]
            assert e["fullUrl"] == f"urn:uuid:{r['id']}"
            assert e["request"] == {"method": "POST", "url": r["resourceType"]}
            assert r["meta"]["lastUpdated"] < "2026-01-01"
            if r["resourceType"] != "Patient":
                owner = r.get("subject") or r.get("patient")
                assert owner == {"reference": f"urn:uuid:{patient_id}"}, r["resourceType"]
        refs = [ref for e in b["entry"] for ref in _references(e["resource"])]
        assert refs and all(ref in full_urls for ref in refs if ref.startswith("urn:uuid:"))


def test_patients_have_mrn_and_ssn(bundles):
    for p in _resources(bundles, "Patient"):
        by_code = {i["type"]["coding"][0]["code"]: i for i in p["identifier"]}
        assert by_code["MR"]["system"] == MR_SYSTEM
        assert by_code["MR"]["type"]["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/v2-0203"
        assert re.fullmatch(r"MRN\d{8}", by_code["MR"]["value"])
        assert by_code["SS"]["system"] == "http://hl7.org/fhir/sid/us-ssn"
        assert re.fullmatch(r"999-\d{2}-\d{4}", by_code["SS"]["value"])
        assert p["name"][0]["use"] == "official" and p["address"][0]["country"] == "US"
    mrns = [_mrn(p) for p in _resources(bundles, "Patient")]
    assert len(set(mrns)) == len(mrns)


def test_notes_carry_phi_and_clinical_facts(bundles):
    for b in bundles:
        patient = b["entry"][0]["resource"]
        family, mrn = patient["name"][0]["family"], _mrn(patient)
        docs = [e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "DocumentReference"]
        assert 2 <= len(docs) <= 4
        for doc in docs:
            assert doc["type"]["coding"][0]["code"] in NOTE_CODES
            attachment = doc["content"][0]["attachment"]
            assert attachment["contentType"] == "text/plain; charset=utf-8"
            text = base64.b64decode(attachment["data"]).decode("utf-8")
            assert family in text and mrn in text and patient["telecom"][0]["value"] in text
            assert 200 <= len(text.split()) <= 450
            assert "Assessment and plan" in text or "Discharge diagnoses" in text
            assert doc["context"]["encounter"][0]["reference"].startswith("urn:uuid:")


def test_diagnostic_reports_match_imaging_studies(bundles):
    studies = {s["id"]: s for s in _resources(bundles, "ImagingStudy")}
    reports = list(_resources(bundles, "DiagnosticReport"))
    assert len(reports) == len(studies)
    for r in reports:
        study = studies[r["imagingStudy"][0]["reference"].removeprefix("urn:uuid:")]
        acsn = next(i["value"] for i in study["identifier"] if i.get("type", {}).get("coding", [{}])[0].get("code")
                    == "ACSN")
        assert r["identifier"][0]["value"] == acsn
        assert r["category"][0]["coding"][0]["code"] == "RAD"
        text = base64.b64decode(r["presentedForm"][0]["data"]).decode()
        assert "FINDINGS:" in text and "IMPRESSION:" in text and 100 <= len(text.split()) <= 200


# ------------------------------------------------------------------ DICOM


def test_dicom_files_match_fhir(run, bundles):
    landing = run[0]
    checked = 0
    for b in bundles:
        patient = b["entry"][0]["resource"]
        for study in (e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "ImagingStudy"):
            study_uid = study["identifier"][0]["value"].removeprefix("urn:oid:")
            assert study["identifier"][0]["system"] == "urn:dicom:uid"
            accession = study["identifier"][1]["value"]
            for series in study["series"]:
                for inst in series["instance"]:
                    path = landing / "dicom" / study_uid / series["uid"] / f"{inst['uid']}.dcm"
                    ds = pydicom.dcmread(path)
                    assert ds.PatientID == _mrn(patient)
                    assert str(ds.PatientName) == f"{patient['name'][0]['family']}^{patient['name'][0]['given'][0]}"
                    assert ds.PatientBirthDate == patient["birthDate"].replace("-", "")
                    assert ds.StudyInstanceUID == study_uid and ds.SeriesInstanceUID == series["uid"]
                    assert ds.SOPInstanceUID == inst["uid"] and ds.AccessionNumber == accession
                    assert ds.Modality == series["modality"]["code"]
                    assert f"urn:oid:{ds.file_meta.MediaStorageSOPClassUID}" == inst["sopClass"]["code"]
                    assert ds.pixel_array.shape == (16, 16)
                    assert re.fullmatch(r"[0-9.]{1,64}", ds.SOPInstanceUID)
                    checked += 1
    assert checked == run[1].dicom_files


# -------------------------------------------------------------------- VCF


def test_vcf_reads_with_cyvcf2_and_matches_manifest(run, bundles):
    cyvcf2 = pytest.importorskip("cyvcf2")
    landing = run[0]
    path = landing / "vcf" / "cohort.vcf.gz"
    raw = path.read_bytes()
    assert raw[:4] == b"\x1f\x8b\x08\x04" and raw[12:14] == b"BC" and raw.endswith(vcfmod.BGZF_EOF)
    assert gzip.decompress(raw).startswith(b"##fileformat=VCFv4.2")
    reader = cyvcf2.VCF(str(path))
    with open(landing / "vcf" / "sample_manifest.csv", newline="") as f:
        manifest = list(csv.DictReader(f))
    assert reader.samples == [row["sample_id"] for row in manifest]
    mrns = {_mrn(p) for p in _resources(bundles, "Patient")}
    assert {row["mrn"] for row in manifest} <= mrns
    records = list(reader)
    panel = cyvcf2.VCF(str(landing / "vcf" / "panel.snpeff.vcf"))
    assert panel.samples == reader.samples and "ANN" in panel.raw_header
    assert panel.raw_header.startswith("##fileformat=VCFv4.3")
    panel_records = list(panel)
    assert any(len(r.ALT) == 3 for r in panel_records)
    assert len(records) + len(panel_records) == run[1].variants
    assert list(cyvcf2.VCF(str(landing / "vcf" / "rerun.vcf"))) == []
    assert any(len(r.ALT) > 1 for r in records)
    assert any(len(r.REF) != len(r.ALT[0]) for r in records)
    assert "CSQ" in reader.raw_header and "Ensembl VEP" in reader.raw_header
    keys = [(vcfmod._chrom_order(r.CHROM), r.POS) for r in records]
    assert keys == sorted(keys)


def test_breast_cancer_samples_carry_pathogenic_brca(run, bundles):
    cyvcf2 = pytest.importorskip("cyvcf2")
    landing = run[0]
    with open(landing / "vcf" / "sample_manifest.csv", newline="") as f:
        sample_of = {row["mrn"]: row["sample_id"] for row in csv.DictReader(f)}
    cancer = set()
    for b in bundles:
        if any(r["resourceType"] == "Condition" and r["code"]["coding"][0]["code"] == "254837009"
               for r in (e["resource"] for e in b["entry"])):
            cancer.add(sample_of[_mrn(b["entry"][0]["resource"])])
    reader = cyvcf2.VCF(str(landing / "vcf" / "cohort.vcf.gz"))
    carriers = set()
    for r in reader:
        if r.INFO.get("GENEINFO", "").split(":")[0] in ("BRCA1", "BRCA2") and "Pathogenic" in r.INFO["CLNSIG"]:
            carriers |= {s for s, gt in zip(reader.samples, r.genotypes) if 1 in gt[:2]}
    assert cancer <= carriers


def test_carrier_flag_forces_a_pathogenic_brca_het():
    variants = vcfmod.make_variants(random.Random(3))
    rows = vcfmod.make_genotypes(random.Random(4), variants, [True, False])
    hits = [v for v, row in zip(variants, rows)
            if v.gene in ("BRCA1", "BRCA2") and v.pathogenic and row[0].split(":")[0] in ("0/1", "0|1", "1|0")]
    assert hits


def test_bgzf_written_in_pieces_is_the_file_written_whole():
    """The cohort-scale file is streamed block by block (its text would not fit in
    memory at benchmark sizes): cut anywhere, the pieces give the same bytes."""
    rng = random.Random(5)
    data = bytes(rng.randrange(32, 127) for _ in range(3 * vcfmod.BGZF_BLOCK + 1234))
    cuts = sorted(rng.sample(range(1, len(data)), 40)) + [len(data)]
    pieces = [data[a:b] for a, b in zip([0] + cuts, cuts)]
    streamed = b"".join(vcfmod.bgzf_blocks(pieces))
    assert streamed == vcfmod.bgzf_compress(data)
    assert gzip.decompress(streamed) == data and streamed.endswith(vcfmod.BGZF_EOF)


def test_a_benchmark_file_outgrowing_a_small_gene_moves_on_to_the_others(monkeypatch):
    """A cohort-scale file asks for more sites than a small gene holds (APOE: a few
    hundred). The generator used to loop forever there; now a full gene is skipped, and
    only when every gene is full does it stop, saying so."""
    monkeypatch.setattr(vcfmod, "GENES", {g: vcfmod.GENES[g] for g in ("APOE", "HBB")})
    monkeypatch.setattr(vcfmod, "_TRIES", 2_000)
    rng, used, variants = random.Random(7), set(), []
    with pytest.raises(vcfmod.GeneFull, match="all 2 catalog genes are full; ask for fewer sites"):
        while True:
            variants.append(vcfmod._synthetic(rng, used))
    assert {("full", "APOE"), ("full", "HBB")} <= used
    for gene in ("APOE", "HBB"):
        chrom, start, end = vcfmod.GENES[gene][:3]
        spots = sorted(v.pos for v in variants if v.gene == gene)
        assert len(spots) > 150 and all(start + 100 <= p <= end - 100 for p in spots)
        assert all(b - a > 4 for a, b in zip(spots, spots[1:]))  # never on or next to another


# -------------------------------------------------------------- bad files


def test_bad_files_are_broken(run, bundles):
    landing = run[0]
    with pytest.raises(json.JSONDecodeError):
        json.loads((landing / "fhir" / "bad-truncated.json").read_bytes())
    not_fhir = json.loads((landing / "fhir" / "bad-not-fhir.json").read_bytes())
    assert "resourceType" not in not_fhir
    bundle = json.loads((landing / "fhir" / "bad-resource-missing-id.json").read_bytes())
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    resources = [e["resource"] for e in bundle["entry"]]
    assert sum("id" not in r for r in resources) == 1
    assert sum("resourceType" not in r for r in resources) == 1
    patient = resources[0]
    assert patient["resourceType"] == "Patient" and _mrn(patient) not in {_mrn(p) for p in _resources(bundles,
                                                                                                    "Patient")}
    for name in ("corrupt.dcm", "not-dicom.dcm"):
        with pytest.raises(Exception):
            pydicom.dcmread(landing / "dicom" / "bad" / name)
    assert (landing / "dicom" / "bad" / "corrupt.dcm").read_bytes()[128:132] == b"DICM"
    lines = (landing / "vcf" / "bad-malformed.vcf").read_text().splitlines()
    assert lines[0] == "##fileformat=VCFv4.2"
    records = [ln for ln in lines if not ln.startswith("#")]
    assert len(records) == 2 and records[0].split("\t")[1].isdigit()
    assert records[1].split("\t")[1] == "abc" and len(records[1].split("\t")) < 8


# ----------------------------------------------------------------- NDJSON


def test_ndjson_mode_writes_bulk_files_only(run, bundles, tmp_path):
    result = generate(tmp_path, N, seed=SEED, ndjson=True)
    assert not list((tmp_path / "fhir").glob("patient-*.json"))
    files = sorted((tmp_path / "fhir" / "bulk").glob("*.ndjson"))
    assert result.fhir_files == len(files)
    ids, refs, counts = set(), [], {}
    for f in files:
        text = f.read_text()
        assert "urn:uuid" not in text
        for line in text.splitlines():
            r = json.loads(line)
            assert r["resourceType"] == f.stem
            ids.add(f"{r['resourceType']}/{r['id']}")
            refs += list(_references(r))
            counts[f.stem] = counts.get(f.stem, 0) + 1
    assert counts == result.fhir_resources
    assert all(ref in ids for ref in refs if "/" in ref)
    bundle_ids = {f"{r['resourceType']}/{r['id']}" for r in _resources(bundles)}
    assert ids == bundle_ids
