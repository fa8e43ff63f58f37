"""Orchestrate generation of a deterministic, multimodal hospital landing zone.

    generate(landing, patients=100, seed=42)

writes FHIR (per-patient transaction Bundles, or Bulk Data NDJSON), DICOM, a
cohort VCF with its sample manifest and, on request, deliberately broken files.

Determinism: one `random.Random(seed)` hands each patient its own seed, and one
`Faker("en_US")` seeded with the same seed draws names and addresses in patient
order; dates are anchored on 2026-01-01, never the wall clock, and BGZF headers
carry mtime 0. The same arguments therefore produce byte-identical files, and
a run with more patients starts with the same patients as a smaller one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

from faker import Faker

from medlake.generate import dicom, fhir
from medlake.generate import model as m
from medlake.generate.bad import write_bad_files
from medlake.generate.patient import make_clinicians, simulate
from medlake.generate.vcf import write_vcf

GENOMICS_SHARE = 0.7
MRN_RANGE = (10_000_000, 89_999_999)


@dataclass
class GenerateResult:
    """What a run wrote, for the CLI summary and for asset metadata."""

    patients: int = 0
    fhir_files: int = 0  # bundles, or NDJSON files in ndjson mode (bad files not counted)
    fhir_resources: dict[str, int] = field(default_factory=dict)
    dicom_files: int = 0
    imaging_studies: int = 0
    vcf_files: int = 0
    variants: int = 0
    samples: int = 0
    bad_files: list[Path] = field(default_factory=list)
    notes: int = 0


def generate(landing: Path, patients: int, seed: int = 42, bad_files: bool = False,
             ndjson: bool = False, progress: Callable[[int], None] | None = None) -> GenerateResult:
    """Write a synthetic hospital landing zone under `landing`.

    Layout:
      fhir/patient-0001.json ...           one transaction Bundle per patient (default), or
      fhir/bulk/<ResourceType>.ndjson      with ndjson=True *instead of* the bundles, so the
                                           same resources never land twice in two forms;
      dicom/<StudyUID>/<SeriesUID>/<SOPUID>.dcm
      vcf/cohort.vcf.gz (VEP), vcf/panel.snpeff.vcf (snpEff, VCF 4.3), vcf/rerun.vcf (header only),
      vcf/sample_manifest.csv (sample_id,mrn)
      with bad_files=True: fhir/bad-*.json, dicom/bad/*.dcm, vcf/bad-malformed.vcf

    `progress(n)` is called after each patient with n = patients completed so far.
    Files are overwritten, so re-running with the same arguments is idempotent;
    files from earlier runs with other arguments are not removed.
    """
    landing = Path(landing)
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    staff = make_clinicians(fake, rng)
    result = GenerateResult()
    fhir_dir, dicom_dir = landing / "fhir", landing / "dicom"
    fhir_dir.mkdir(parents=True, exist_ok=True)
    dicom_dir.mkdir(parents=True, exist_ok=True)
    bulk = fhir.NdjsonWriter(fhir_dir / "bulk") if ndjson else None
    cohort: list[m.Patient] = []
    mrns: set[str] = set()
    for i in range(1, patients + 1):
        p = _new_patient(i, rng, fake, staff, mrns, sum(1 for c in cohort if c.sample_id) + 1)
        cohort.append(p)
        _write_patient(p, fhir_dir, dicom_dir, bulk, result)
        if progress:
            progress(i)
    if bulk:
        result.fhir_files = len(bulk.write())
    vcf_paths, result.variants, result.samples = write_vcf(landing / "vcf", random.Random(rng.getrandbits(64)),
                                                           cohort)
    result.vcf_files = len(vcf_paths)
    result.patients = len(cohort)
    if bad_files:
        result.bad_files = write_bad_files(landing, random.Random(rng.getrandbits(64)), fake, staff)
    return result


def _new_patient(index: int, rng: random.Random, fake: Faker, staff, mrns: set[str],
                 next_sample: int) -> m.Patient:
    """Simulate patient `index` from its own seed and give it a unique MRN and maybe a sample id."""
    seed = rng.getrandbits(64)
    prng = random.Random(seed)
    mrn_number = prng.randint(*MRN_RANGE)
    while f"MRN{mrn_number}" in mrns:  # astronomically rare; keeps MRNs unique deterministically
        mrn_number = mrn_number + 1 if mrn_number < MRN_RANGE[1] else MRN_RANGE[0]
    mrns.add(f"MRN{mrn_number}")
    p = simulate(index, f"MRN{mrn_number}", prng, fake, staff)
    p.seed = seed
    if p.has("breast_cancer") or prng.random() < GENOMICS_SHARE:
        p.sample_id = f"S{next_sample:04d}"  # breast-cancer patients are always sequenced
    return p


def _write_patient(p: m.Patient, fhir_dir: Path, dicom_dir: Path, bulk, result: GenerateResult) -> None:
    """Render one patient to FHIR and DICOM and add to the counts."""
    resources = fhir.build_resources(p)
    if bulk is not None:
        bulk.add(resources)
    else:
        fhir.write_bundle(fhir_dir / f"patient-{p.index:04d}.json", resources)
        result.fhir_files += 1
    for r in resources:
        result.fhir_resources[r["resourceType"]] = result.fhir_resources.get(r["resourceType"], 0) + 1
    for study in p.imaging:
        result.dicom_files += len(dicom.write_study(dicom_dir, p, study))
    result.imaging_studies += len(p.imaging)
    result.notes += len(p.notes)
