"""VCF files and their sample manifests → `bronze.vcf_variants`, `bronze.vcf_genotypes`
and `bronze.vcf_samples`.

htslib (through cyvcf2) does the parsing; a record htslib rejects quarantines the whole
file with the record number, because a VCF with a hole in it would mislead anyone
counting carriers.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import cyvcf2
import numpy as np
import orjson
import pyarrow as pa

from medlake.ingest import Modality, Parsed, Problem, TableSpec

_PROVENANCE = [("source_uri", pa.string()), ("source_sha256", pa.string()),
               ("batch_id", pa.string()), ("ingested_at", pa.timestamp("us", tz="UTC"))]

VARIANTS = TableSpec(
    name="bronze.vcf_variants",
    schema=pa.schema([
        ("variant_id", pa.string()), ("chrom", pa.string()), ("pos", pa.int64()),
        ("ref", pa.string()), ("alt", pa.string()), ("id", pa.string()),
        ("qual", pa.float64()), ("filters", pa.string()), ("info", pa.string()),
        ("clnsig", pa.string()), ("gene", pa.string()), ("csq", pa.string()),
        *_PROVENANCE,
    ]),
    keys=["variant_id"],
    description=(
        "Variant sites from `landing/vcf/` (VCF 4.x, plain or bgzipped), one row per "
        "chrom:pos:ref:alt, with INFO as JSON, ClinVar CLNSIG and the raw VEP/snpEff "
        "annotation. A file htslib cannot parse is quarantined whole."),
)
GENOTYPES = TableSpec(
    name="bronze.vcf_genotypes",
    schema=pa.schema([
        ("sample_id", pa.string()), ("variant_id", pa.string()), ("gt", pa.string()),
        ("phased", pa.bool_()), ("alt_count", pa.int64()), ("dp", pa.int64()),
        ("gq", pa.int64()), *_PROVENANCE,
    ]),
    keys=["sample_id", "variant_id"],
    description="Genotype calls in long form, one row per (sample_id, variant_id), with "
                "GT text, phasing, alt allele count, DP and GQ.",
)
SAMPLES = TableSpec(
    name="bronze.vcf_samples",
    schema=pa.schema([("sample_id", pa.string()), ("mrn", pa.string()), *_PROVENANCE]),
    keys=["sample_id"],
    update_when="s.mrn <> t.mrn",
    description="Sample manifest (CSV in `landing/vcf/`): sequencing sample id → patient "
                "MRN, which links genotypes to person_key. Holds identifiers.",
)


def variant_id(chrom: str, pos: int, ref: str, alt: list[str]) -> str:
    return f"{chrom}:{pos}:{ref}:{','.join(alt) or '.'}"


def _plain(value):
    """INFO values come back as numpy scalars/tuples; make them JSON-friendly."""
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def _gt_text(alleles: list[int], phased: bool) -> str:
    return ("|" if phased else "/").join("." if a < 0 else str(a) for a in alleles)


def _format_ints(record, key: str, n: int) -> list[int | None]:
    """One integer per sample for a FORMAT key; missing or non-numeric values → None."""
    try:
        values = record.format(key)
    except KeyError:
        values = None
    if values is None or values.dtype.kind not in "iuf":
        return [None] * n
    first = values.reshape(n, -1)[:, 0] if values.size else []
    out = []
    for v in first:
        ok = not (isinstance(v, float) and math.isnan(v)) and -2**31 < v
        out.append(int(v) if ok and v >= 0 else None)
    return out


def parse_vcf(path: Path) -> Parsed:
    try:
        vcf = cyvcf2.VCF(str(path))
    except Exception as e:
        return Parsed(problems=[Problem(f"VCF header could not be parsed ({e}); "
                                        "check the ## meta lines and the #CHROM line.")], fatal=True)
    variants, genotypes = [], []
    samples = list(vcf.samples)
    n = 0
    try:
        for record in vcf:
            n += 1
            vid = variant_id(record.CHROM, record.POS, record.REF, record.ALT)
            info = {k: _plain(v) for k, v in record.INFO}
            gene = info.get("GENEINFO")
            variants.append(dict(
                variant_id=vid, chrom=record.CHROM, pos=record.POS, ref=record.REF,
                alt=",".join(record.ALT), id=record.ID,
                qual=None if record.QUAL is None else float(record.QUAL),
                filters=record.FILTER or "PASS", info=orjson.dumps(info).decode(),
                clnsig=_first(info.get("CLNSIG")),
                gene=str(gene).split(":")[0] if gene else None,
                csq=_first(info.get("CSQ")) or _first(info.get("ANN")),
            ))
            if samples:
                dp = _format_ints(record, "DP", len(samples))
                gq = _format_ints(record, "GQ", len(samples))
                for i, (sample, call) in enumerate(zip(samples, record.genotypes)):
                    alleles, phased = [int(a) for a in call[:-1]], bool(call[-1])
                    genotypes.append(dict(
                        sample_id=sample, variant_id=vid, gt=_gt_text(alleles, phased),
                        phased=phased, alt_count=sum(1 for a in alleles if a > 0),
                        dp=dp[i], gq=gq[i]))
    except Exception as e:
        return Parsed(problems=[Problem(f"VCF record {n + 1} (after {n} good records) could not "
                                        f"be parsed ({e}); fix or remove that line.")], fatal=True)
    finally:
        vcf.close()
    return Parsed(rows={VARIANTS.name: variants, GENOTYPES.name: genotypes})


def _first(value):
    if isinstance(value, list):
        return ",".join(str(v) for v in value) if value else None
    return None if value is None else str(value)


def parse_manifest(path: Path) -> Parsed:
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"sample_id", "mrn"} <= {f.strip() for f in reader.fieldnames}:
        return Parsed(problems=[Problem("Sample manifest needs a header with the columns "
                                        "sample_id and mrn.")], fatal=True)
    out = Parsed(rows={SAMPLES.name: []})
    for line, row in enumerate(reader, start=2):
        sample, mrn = (row.get("sample_id") or "").strip(), (row.get("mrn") or "").strip()
        if not sample or not mrn:
            out.problems.append(Problem("Manifest row lacks a sample_id or an mrn.", f"#line={line}"))
            continue
        out.rows[SAMPLES.name].append(dict(sample_id=sample, mrn=mrn))
    return out


def parse(path: Path) -> Parsed:
    if path.suffix.lower() == ".csv":
        return parse_manifest(path)
    return parse_vcf(path)


VCF = Modality(name="vcf", patterns=["**/*.vcf", "**/*.vcf.gz", "**/*.csv"],
               tables=[VARIANTS, GENOTYPES, SAMPLES], parse=parse)
