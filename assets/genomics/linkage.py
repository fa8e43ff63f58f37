"""Sample → patient linkage: which sequenced samples the manifest maps to an MRN.

silver.genotype joins through the manifest, so a sample without a manifest row simply
has no person there. This module counts those samples so an asset check can say so
out loud instead of letting them vanish.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
import duckdb

from medlake import lake

GENOTYPES, SAMPLES, FHIR = "bronze.vcf_genotypes", "bronze.vcf_samples", "bronze.fhir_resources"


@dataclass
class Linkage:
    samples: int = 0  # distinct sample ids with genotypes
    linked: int = 0  # of those, in the manifest
    unmapped: list[str] = field(default_factory=list)  # sample ids not in the manifest
    mrns_without_patient: int = 0  # manifest MRNs that no FHIR Patient carries


def sample_linkage() -> Linkage:
    tables = {name: lake.open_table(name) for name in (GENOTYPES, SAMPLES, FHIR)}
    if tables[GENOTYPES] is None:
        return Linkage()
    con = duckdb.connect()
    try:
        for name, dt in tables.items():
            if dt is not None:
                con.execute(f"CREATE VIEW {name.split('.')[1]} AS SELECT * FROM {lake.scan_sql(dt)}")
        if tables[SAMPLES] is None:
            con.execute("CREATE VIEW vcf_samples AS SELECT NULL::VARCHAR AS sample_id, "
                        "NULL::VARCHAR AS mrn LIMIT 0")
        rows = con.execute(
            "SELECT DISTINCT g.sample_id, s.sample_id IS NOT NULL FROM vcf_genotypes g "
            "LEFT JOIN vcf_samples s USING (sample_id) ORDER BY 1").fetchall()
        out = Linkage(samples=len(rows), linked=sum(1 for _, ok in rows if ok),
                      unmapped=[sample for sample, ok in rows if not ok])
        if tables[FHIR] is not None:
            # Compared with every identifier value of every Patient: an MRN no patient carries.
            out.mrns_without_patient = con.execute(
                "SELECT count(DISTINCT mrn) FROM vcf_samples WHERE mrn NOT IN ("
                "  SELECT json_extract_string(i.ident, '$.value') FROM fhir_resources f, "
                "  unnest(json_extract(f.resource, '$.identifier[*]')) AS i(ident) "
                "  WHERE f.resource_type = 'Patient' AND i.ident IS NOT NULL)").fetchall()[0][0]
        return out
    finally:
        con.close()


@dg.asset_check(asset=dg.AssetKey(["bronze", "vcf_genotypes"]), name="samples_linked",
                additional_deps=[dg.AssetKey(["bronze", "vcf_samples"])],
                description="Every sequenced sample is in a sample manifest (so it links to a "
                            "person_key), and every manifest MRN belongs to a known patient. "
                            "Unlinked samples are left out of silver.genotype, never guessed.")
def samples_linked() -> dg.AssetCheckResult:
    link = sample_linkage()
    return dg.AssetCheckResult(
        passed=not link.unmapped and not link.mrns_without_patient,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "samples": link.samples, "linked_samples": link.linked,
            "unmapped_samples": len(link.unmapped),
            # Lab sample ids, not patient identifiers: listed so the lab can fix the manifest.
            "unmapped_sample_ids": ", ".join(link.unmapped[:50]) or "none",
            "manifest_mrns_without_patient": link.mrns_without_patient,
        })
