"""VCF/BCF files and their sample manifests → `bronze.vcf_variants`,
`bronze.vcf_genotypes`, `bronze.vcf_annotations` and `bronze.vcf_samples`.

htslib (through cyvcf2) does the parsing. A file is streamed: every `BATCH_GENOTYPES`
genotypes become one piece that the ingest engine buffers and merges, and the sites and
their annotations travel in pieces of `BATCH_SITES`, so memory stays bounded whatever
the file size. A piece of calls is the per-site numpy matrices cyvcf2 returns; they
become Arrow columns at the flush, on the engine's writer thread, with numpy over the
whole flush, never as Python objects per call (`_Calls`).

A record htslib rejects quarantines the whole file, naming the line and what is wrong
with it (the engine deletes whatever of the file had already landed), because a VCF
with a hole in it would mislead anyone counting carriers.
"""
from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Iterator
from itertools import groupby
from pathlib import Path

import cyvcf2
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from assets.genomics import native
from assets.genomics.annotations import ROW, AnnotationFormat, header_formats
from medlake.ingest import Batch, Modality, Parsed, Problem, Rows, TableSpec
from medlake.lake import ArrowWriter, decoded

BATCH_GENOTYPES = 50_000
# Sites and annotations are small rows: every 10,000 sites (at 500 samples, once per ten
# genotype flushes) keeps their two tables' files and commits off most flushes
# (bench/vcf.py: 0.1-0.3 CPU-s less per 2M genotypes than every 1,000).
BATCH_SITES = 10_000

_PROVENANCE = [("source_uri", pa.string()), ("source_sha256", pa.string()),
               ("batch_id", pa.string()), ("ingested_at", pa.timestamp("us", tz="UTC"))]
_INTS = pa.list_(pa.int64())

VARIANTS = TableSpec(
    name="bronze.vcf_variants",
    schema=pa.schema([
        ("variant_id", pa.string()), ("chrom", pa.string()), ("pos", pa.int64()),
        ("ref", pa.string()), ("alt", pa.string()), ("id", pa.string()),
        ("qual", pa.float64()), ("filters", pa.string()), ("info", pa.string()),
        ("af", pa.list_(pa.float64())), ("dp", pa.int64()),
        ("clnsig", pa.string()), ("gene", pa.string()), ("csq", pa.string()),
        *_PROVENANCE,
    ]),
    keys=["chrom", "variant_id"],  # chrom is implied by variant_id; it lets MERGE prune
    partition_by=["chrom"],
    writer_properties=ArrowWriter(),
    description=(
        "Variant sites from `landing/vcf/` (VCF 4.1–4.3 plain or bgzipped, BCF), one row "
        "per chrom:pos:ref:alt, with INFO as JSON, typed AF/DP, ClinVar CLNSIG, gene and "
        "the raw VEP/snpEff annotation. Partitioned by chromosome. A file htslib cannot "
        "parse is quarantined whole."),
)
GENOTYPES = TableSpec(
    name="bronze.vcf_genotypes",
    schema=pa.schema([
        ("sample_id", pa.string()), ("variant_id", pa.string()), ("chrom", pa.string()),
        ("gt", pa.string()), ("alleles", _INTS), ("phased", pa.bool_()),
        ("alt_count", pa.int64()), ("dp", pa.int64()), ("gq", pa.int64()), ("ad", _INTS),
        *_PROVENANCE,
    ]),
    keys=["chrom", "sample_id", "variant_id"],
    partition_by=["chrom"],
    # pyarrow's writer at a third of delta-rs's CPU here (README, VCF benchmark): strings
    # as dictionaries, integers delta-encoded (17% less CPU than plain, half the bytes),
    # and a flush's chromosome files written side by side. Statistics for variant_id
    # only: they let a MERGE skip files, while every file holds every sample, so
    # sample_id's would prune nothing (and cost a hash of the column per file).
    writer_properties=ArrowWriter(dict(
        use_dictionary=["sample_id", "variant_id", "gt", "source_uri", "source_sha256", "batch_id"],
        column_encoding={c: "DELTA_BINARY_PACKED" for c in [
            "alleles.list.element", "ad.list.element", "alt_count", "dp", "gq", "ingested_at"]},
        write_statistics=["variant_id"]), threads=2),
    description="Genotype calls in long form, one row per (sample_id, variant_id): GT text, "
                "allele indexes (null = missing), phasing, alt allele count, DP, GQ, AD. "
                "Partitioned by chromosome.",
)
ANNOTATIONS = TableSpec(
    name="bronze.vcf_annotations",
    schema=pa.schema([
        ("variant_id", pa.string()), ("chrom", pa.string()), ("source", pa.string()),
        ("n", pa.int64()), ("allele", pa.string()), ("consequence", pa.string()),
        ("impact", pa.string()), ("gene", pa.string()), ("gene_id", pa.string()),
        ("transcript", pa.string()), ("biotype", pa.string()), ("hgvs_c", pa.string()),
        ("hgvs_p", pa.string()), ("fields", pa.string()), *_PROVENANCE,
    ]),
    keys=["chrom", "variant_id", "source", "n"],
    partition_by=["chrom"],
    writer_properties=ArrowWriter(),
    description="VEP CSQ and snpEff ANN/EFF annotations, one row per (variant, source, "
                "n-th annotation), with the field order read from each file's header: "
                "allele, consequence, impact, gene, transcript, HGVS c./p.",
)
SAMPLES = TableSpec(
    name="bronze.vcf_samples",
    schema=pa.schema([("sample_id", pa.string()), ("mrn", pa.string()), *_PROVENANCE]),
    keys=["sample_id"],
    update_when="s.mrn <> t.mrn",
    description="Sample manifest (CSV in `landing/vcf/`): sequencing sample id → patient "
                "MRN, which links genotypes to person_key. Holds identifiers.",
)

# The parser's columns (the engine adds the provenance ones).
_SITE = pa.schema(list(VARIANTS.schema)[:-len(_PROVENANCE)])
_ANNOTATION = pa.schema(list(ANNOTATIONS.schema)[:-len(_PROVENANCE)])
assert _ANNOTATION.names[2:] == list(ROW)

# htslib's int32 sentinels for a missing value and for the end of a shorter vector
_MISSING, _END = -2147483648, -2147483647


def variant_id(chrom: str, pos: int, ref: str, alt: list[str]) -> str:
    return f"{chrom}:{pos}:{ref}:{','.join(alt) or '.'}"


def _plain(value):
    """INFO values come back as numpy scalars/tuples; make them JSON-friendly."""
    kind = type(value)
    if kind is str or kind is int or kind is bool:  # the usual cases, first
        return value
    if kind is float:
        return None if value != value else value  # NaN: missing
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def _text(value) -> str | None:
    if isinstance(value, list):
        return ",".join(str(v) for v in value) if value else None
    return None if value is None else str(value)


def _floats(value) -> list[float] | None:
    values = value if isinstance(value, list) else [value]
    try:
        return [None if v is None else float(v) for v in values] if value is not None else None
    except (TypeError, ValueError):
        return None


def _int(value) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, list) else None
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------------ genotypes


def gt_text(alleles: np.ndarray, phased: bool) -> str | None:
    """VCF GT text of one call's allele indexes (-1 missing, -2 padding)."""
    kept = [("." if a == -1 else str(a)) for a in alleles if a != -2]
    return ("|" if phased else "/").join(kept) if kept else None


# A call as one integer: allele indexes (+2, so padding is 0 and missing is 1) as base-64
# digits, first allele lowest, times two plus the phase bit. -1 means no GT at all. Ten
# digits fit in an int64, so calls of up to 61 alleles and ploidy 10.
_GT_BASE, _GT_DIGITS = 64, 10


def _gt_codes(alleles: np.ndarray, phased: np.ndarray) -> np.ndarray:
    # int32 while it holds (ploidy 4): half the memory traffic of int64, and cheaper to hash
    kind = np.int32 if alleles.shape[1] <= 4 else np.int64
    code = np.zeros(len(alleles), kind)
    for j in range(alleles.shape[1] - 1, -1, -1):
        code *= _GT_BASE
        code += alleles[:, j]
        code += 2
    code *= 2
    code += phased
    return code


def _gt_from_code(code: int) -> str | None:
    if code < 0:
        return None
    phased, code = code & 1, code >> 1
    alleles = []
    while code:
        code, digit = divmod(code, _GT_BASE)
        alleles.append(digit - 2)
    return gt_text(np.array(alleles), bool(phased))


def _row_counts(mask: np.ndarray) -> np.ndarray:
    """True values per row of a (rows, k) mask, column by column: numpy's row-wise
    reductions are slow on rows this narrow."""
    counts = mask[:, 0].astype(np.int64)
    for j in range(1, mask.shape[1]):
        counts += mask[:, j]
    return counts


def _ragged(parts: list[np.ndarray | None], rows: int, pad: int) -> pa.ListArray:
    """Per-site (rows, k_i) integer matrices (None: the site lacks the field) → one
    list<int64> per row, without htslib's padding after a shorter vector (`pad`: -2 in GT,
    its END sentinel elsewhere). Negative values (missing) are null items, and a row with
    no values at all (no GT, no AD) is null, not an empty list. Sites of different widths
    are never padded to the widest: each row's length comes from its own site."""
    shapes = [0 if p is None else p.shape[1] for p in parts]
    present = [p.reshape(-1) for p in parts if p is not None]
    if not present:
        return pa.nulls(len(parts) * rows, pa.list_(pa.int64()))
    flat = np.concatenate(present) if len(present) > 1 else present[0]
    keep = flat != pad
    unpadded, one_width = keep.all(), len(set(shapes)) == 1
    if unpadded and one_width:  # the usual batch: nothing to drop
        values = flat.astype(np.int64)
        offsets = np.arange(0, len(values) + 1, shapes[0], dtype=np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), _int_array(values, values < 0))
    widths = np.repeat(np.array(shapes, np.int64), rows)
    if unpadded:
        lengths = widths
    elif one_width:  # count each row's padding column by column
        lengths = widths - _row_counts(~keep.reshape(-1, shapes[0]))
        flat = flat[keep]
    else:  # padding trails a row's values: count each row's kept ones
        bounds = np.zeros(len(widths) + 1, np.int64)
        np.cumsum(widths, out=bounds[1:])
        kept = np.zeros(len(flat) + 1, np.int64)
        np.cumsum(keep, out=kept[1:])
        lengths = kept[bounds[1:]] - kept[bounds[:-1]]
        flat = flat[keep]
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:], dtype=np.int32)
    values = flat.astype(np.int64)
    empty = lengths == 0
    return pa.ListArray.from_arrays(pa.array(offsets), _int_array(values, values < 0),
                                    mask=pa.array(empty) if empty.any() else None)


def _int_array(values: np.ndarray, missing: np.ndarray) -> pa.Array:
    """int64 values with nulls where `missing`, the validity bitmap packed by numpy
    (`pa.array(..., mask=)` costs several times as much)."""
    values = np.ascontiguousarray(values, np.int64)
    if not missing.any():
        return pa.array(values)
    valid = np.packbits(~missing, bitorder="little")
    return pa.Array.from_buffers(pa.int64(), len(values), [pa.py_buffer(valid), pa.py_buffer(values)])


def _format_matrix(record, key: str, n: int) -> np.ndarray | None:
    """A FORMAT field (which the record has) as an int matrix (samples, k); strings
    holding numbers are converted."""
    values = record.format(key)
    if values is None:
        return None
    if values.dtype.kind == "i" and values.ndim == 2:  # the usual case
        return values
    if values.dtype.kind in "US":  # a field the header does not type: "12" or "3,9"
        rows = [[int(x) if x.lstrip("-").isdigit() else _MISSING
                 for x in (v if values.dtype.kind == "U" else v.decode()).split(",")]
                for v in values.reshape(n, -1)[:, 0]]
        width = max(map(len, rows))
        values = np.array([row + [_END] * (width - len(row)) for row in rows])
    if values.dtype.kind == "f":
        values = np.where(np.isnan(values), _MISSING, values).astype(np.int64)
    return values.reshape(n, -1)


def _stack(parts: list[np.ndarray | None], n: int, fill: int) -> np.ndarray:
    """Per-site (n, k_i) int matrices → one (sites * n, max k) int64 matrix, shorter ones
    padded with `fill` (a site without the field is all `fill`)."""
    widths = {p.shape[1] for p in parts if p is not None}
    if len(widths) == 1 and all(p is not None for p in parts):  # the usual batch: no padding
        return np.concatenate(parts).astype(np.int64, copy=False)
    width = max(widths, default=1)
    out = np.full((len(parts), n, width), fill, np.int64)
    for i, p in enumerate(parts):
        if p is not None:
            out[i, :, :p.shape[1]] = p
    return out.reshape(len(parts) * n, width)


class _Samples:
    """What every piece of one file's calls shares: its samples, as the dictionary of the
    sample_id column, the text of each GT code met so far, and its FORMAT layouts for the
    C decoder (None: the numpy path)."""

    def __init__(self, samples: list[str]):
        self.ids = pa.array(samples, pa.string())
        self.n = len(samples)
        self.gt_known: dict[int, str | None] = {}  # GT code -> text, for the whole file
        self.tiled = np.zeros(0, np.int32)  # see `column`
        self.formats: native.Formats | None = None

    def column(self, sites: int) -> pa.DictionaryArray:
        """The sample ids once per site, as indexes into the samples: a slice of one index
        array kept for the largest flush (flushes mostly hold the same number of sites)."""
        if len(self.tiled) < sites * self.n:
            self.tiled = np.tile(np.arange(self.n, dtype=np.int32), sites)
        return pa.DictionaryArray.from_arrays(self.tiled[:sites * self.n], self.ids)

    def gt(self, codes: np.ndarray) -> pa.DictionaryArray:
        """GT text for each code, as a dictionary column: a cohort has few distinct calls
        (0/0, 0|1, ./.), so each is formatted once per file and the rest is hashing."""
        distinct = pc.dictionary_encode(pa.array(codes))  # cheaper than np.unique
        known = self.gt_known
        texts = [known[c] if c in known else known.setdefault(c, _gt_from_code(c))
                 for c in distinct.dictionary.to_pylist()]
        indices = distinct.indices.to_numpy()
        absent = [i for i, t in enumerate(texts) if t is None]  # no GT: a null, not a value
        if absent:
            mask = np.isin(indices, absent)
            indices = pa.array(indices, mask=mask)
            texts = [t or "" for t in texts]
        if len(set(texts)) < len(texts):  # a dictionary holds each value once
            return pa.array(texts, pa.string()).take(indices).dictionary_encode()
        return pa.DictionaryArray.from_arrays(indices, pa.array(texts, pa.string()))


class _Calls(Batch):
    """One piece of a file's calls: the cyvcf2 records themselves, which the C decoder
    (`native`) reads at the flush, or, where it cannot, the per-site numpy matrices
    cyvcf2 returns. Either becomes Arrow at the flush, on the writer thread and for the
    whole flush at once (`arrow`), mostly outside the GIL, while this thread reads on.
    The strings repeated per call (sample, variant, chromosome, GT) are dictionary
    columns, written to Parquet as the dictionaries they are."""

    def __init__(self, samples: _Samples):
        self.samples = samples
        self.vids, self.chroms, self.calls, self.dp, self.gq, self.ad = [], [], [], [], [], []
        self.records = []  # for the C decoder; a piece holds these or the matrices

    def __len__(self) -> int:
        return len(self.vids) * self.samples.n

    def add(self, record, vid: str, chrom: str) -> None:
        """One record's calls."""
        formats = self.samples.formats
        if formats is not None and not self.calls and formats.native(record):
            self.records.append(record)
        else:
            for earlier in self.records:  # a record the decoder does not take: matrices for all
                self._matrices(earlier, earlier.FORMAT)
            self.records = []
            self._matrices(record, record.FORMAT)
        self.vids.append(vid)
        self.chroms.append(chrom)

    def _matrices(self, record, fmt: list[str]) -> None:
        """One record's calls as numpy matrices; `fmt` is its FORMAT keys."""
        n = self.samples.n
        self.calls.append(record.genotype.array() if "GT" in fmt else None)
        for key, out in (("DP", self.dp), ("GQ", self.gq)):
            m = _format_matrix(record, key, n) if key in fmt else None
            out.append(np.full(n, _MISSING, np.int32) if m is None else m[:, 0])
        self.ad.append(_format_matrix(record, "AD", n) if "AD" in fmt else None)

    @classmethod
    def arrow(cls, batches: list["_Calls"]) -> pa.Table:
        tables = []
        for _, run in groupby(batches, key=lambda b: (b.samples, bool(b.records))):
            run = list(run)
            whole = cls(run[0].samples)
            for b in run:
                for name in ("vids", "chroms", "records", "calls", "dp", "gq", "ad"):
                    getattr(whole, name).extend(getattr(b, name))
            tables.append(whole.table())
        if len({t.schema for t in tables}) > 1:  # a column spelt out in one file's table
            tables = [decoded(t) for t in tables]
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def table(self) -> pa.Table:
        if self.records:
            columns = native.columns(self.records, self.samples.n, self.samples.formats)
            codes = columns.pop("codes")
            if columns.pop("codes_fit"):
                gt = self.samples.gt(codes)
            else:  # more alleles or a higher ploidy than a code holds: text call by call
                gt = pa.array([None if c < 0 else gt_text(np.array([-1 if a is None else a for a in al]), p)
                               for c, al, p in zip(codes, columns["alleles"].to_pylist(),
                                                   columns["phased"].to_pylist())], pa.string())
            return self._assemble(gt=gt, **columns)
        return self._numpy_table()

    def _numpy_table(self) -> pa.Table:
        samples, n, sites = self.samples, self.samples.n, len(self.vids)
        # GT: allele indexes padded with -2 (as htslib pads mixed ploidy); the phase bit last.
        # `calls` is one (calls, ploidy) matrix; the list column is built from `parts` of
        # `rows` calls each, without the padding.
        if all(c is not None for c in self.calls) and len({c.shape[1] for c in self.calls}) == 1:
            whole = np.concatenate(self.calls)  # the usual batch: every site one ploidy
            calls, phased, has_gt = whole[:, :-1], whole[:, -1].astype(bool), None
            parts, rows = [calls], len(calls)
            top = whole.max(initial=0)  # the phase column is 0 or 1: it never decides
        else:
            parts, rows = [None if c is None else c[:, :-1] for c in self.calls], n
            calls = _stack(parts, n, -2)
            phased = _stack([None if c is None else c[:, -1:] for c in self.calls], n, 0)[:, 0].astype(bool)
            has_gt = np.repeat(np.array([c is not None for c in self.calls]), n)
            top = calls.max(initial=0)
        # A call of one allele has no phase. cyvcf2 reads its flag from the padding after
        # it, which differs from file to file (htslib's vector-end of the GT width).
        phased &= calls[:, 1] != -2 if calls.shape[1] > 1 else False
        if calls.shape[1] <= _GT_DIGITS and top < _GT_BASE - 2:
            codes = _gt_codes(calls, phased)
            gt = samples.gt(codes if has_gt is None else np.where(has_gt, codes, -1))
        else:  # more alleles or a higher ploidy than a code holds: text call by call
            present = np.ones(len(calls), bool) if has_gt is None else has_gt
            gt = pa.array([gt_text(c, p) if h else None for c, p, h in zip(calls, phased, present)],
                          pa.string())

        def ints(parts):
            values = np.concatenate(parts).astype(np.int64)
            return _int_array(values, values < 0)

        return self._assemble(gt=gt, alleles=_ragged(parts, rows, -2), phased=pa.array(phased),
                              alt_count=pa.array(_row_counts(calls > 0)),
                              dp=ints(self.dp), gq=ints(self.gq), ad=_ragged(self.ad, n, _END))

    def _assemble(self, **calls: pa.Array) -> pa.Table:
        """The call columns with their sample, variant and chromosome."""
        n, sites = self.samples.n, len(self.vids)
        site = np.repeat(np.arange(sites, dtype=np.int32), n)
        vids = pa.array(self.vids, pa.string())
        chroms = list(dict.fromkeys(self.chroms))
        code = {c: i for i, c in enumerate(chroms)}
        return pa.table({
            "sample_id": self.samples.column(sites),
            # A repeated record would repeat a dictionary value; the engine spells it out.
            "variant_id": pa.DictionaryArray.from_arrays(site, vids) if len(set(self.vids)) == sites
                          else vids.take(site),
            "chrom": pa.DictionaryArray.from_arrays(
                np.repeat(np.array([code[c] for c in self.chroms], np.int32), n), pa.array(chroms)),
            **{name: calls[name] for name in ("gt", "alleles", "phased", "alt_count", "dp", "gq", "ad")},
        })


# ------------------------------------------------------------------ the file


def _header_infos(vcf) -> dict[str, str]:
    return {h["ID"]: h.info().get("Description", "") for h in vcf.header_iter()
            if h.type == "INFO"}


def _site(record, vid: str, chrom: str, pos: int, ref: str, alt: list[str], info: dict) -> tuple:
    """A `bronze.vcf_variants` row, its columns in `_SITE` order."""
    gene = info.get("GENEINFO")
    qual = record.QUAL
    return (vid, chrom, pos, ref, ",".join(alt), record.ID, None if qual is None else float(qual),
            record.FILTER or "PASS", orjson.dumps(info).decode(), _floats(info.get("AF")),
            _int(info.get("DP")), _text(info.get("CLNSIG")),
            str(gene).split(":")[0] if gene else None,
            _text(info.get("CSQ")) or _text(info.get("ANN")) or _text(info.get("EFF")))


def _annotations(info: dict, vid: str, chrom: str, formats: list[AnnotationFormat]) -> list[tuple]:
    """`bronze.vcf_annotations` rows, their columns in `_ANNOTATION` order."""
    rows = []
    for fmt in formats:
        value = info.get(fmt.key)
        if value:
            rows += [(vid, chrom, *row) for row in fmt.rows(value)]
    return rows


class _NewIds:
    """Whether every record so far had a variant id not seen before in the file, known
    without remembering them all: in a sorted file (each chromosome in one block,
    positions ascending) a repeated id could only be at the current position."""

    def __init__(self):
        self.chroms: set[str] = set()
        self.chrom, self.pos, self.here = None, -1, set()
        self.ok = True

    def add(self, chrom: str, pos: int, vid: str) -> None:
        if chrom != self.chrom:
            self.ok = self.ok and chrom not in self.chroms
            self.chroms.add(chrom)
            self.chrom, self.pos, self.here = chrom, pos, set()
        elif pos != self.pos:
            self.ok = self.ok and pos > self.pos
            self.pos, self.here = pos, set()
        self.ok = self.ok and vid not in self.here
        self.here.add(vid)


def stream_vcf(path: Path, batch_genotypes: int | None = None,
               batch_sites: int | None = None) -> Iterator[Parsed]:
    """The file's rows in pieces of about `batch_genotypes` genotypes, its sites and
    annotations every `batch_sites` sites (the module's defaults when not given); a fatal
    problem is the last piece."""
    batch_genotypes = batch_genotypes or BATCH_GENOTYPES
    batch_sites = batch_sites or BATCH_SITES
    try:
        vcf = cyvcf2.VCF(str(path))
    except Exception as e:
        yield Parsed(problems=[Problem(_header_error(path, e))], fatal=True)
        return
    formats = header_formats(_header_infos(vcf))
    samples = list(vcf.samples)
    shared = _Samples(samples)
    genotypes = _Calls(shared)
    # New ids vouch for distinct keys (medlake.ingest): the engine then skips its checks.
    new_ids, unique_samples = _NewIds(), len(set(samples)) == len(samples)
    sites, annotations = [], []
    n = 0
    try:
        for record in vcf:
            if len(genotypes) >= batch_genotypes:
                # Sent when the next record comes, not after the last: a file's last calls
                # then go with its last sites, one flush whose tables the engine writes
                # side by side after the parse has ended.
                yield _piece([], [], genotypes, new_ids.ok, unique_samples)
                genotypes = _Calls(shared)
            n += 1
            # Each attribute read builds a new Python object: read them once.
            chrom, pos, ref, alt = record.CHROM, record.POS, record.REF, record.ALT
            vid = variant_id(chrom, pos, ref, alt)
            new_ids.add(chrom, pos, vid)
            info = {k: _plain(v) for k, v in record.INFO}
            sites.append(_site(record, vid, chrom, pos, ref, alt, info))
            if formats:
                annotations += _annotations(info, vid, chrom, formats)
            if shared.n:
                if n == 1:
                    shared.formats = native.formats_for(record, shared.n)
                genotypes.add(record, vid, chrom)
            if len(sites) >= batch_sites:
                yield _piece(sites, annotations, genotypes, new_ids.ok, unique_samples)
                sites, annotations = [], []
                genotypes = _Calls(shared)
    except Exception as e:
        yield Parsed(problems=[Problem(_record_error(path, n + 1, len(vcf.samples), e))], fatal=True)
        return
    finally:
        vcf.close()
    if sites or len(genotypes):
        yield _piece(sites, annotations, genotypes, new_ids.ok, unique_samples)


def _piece(sites: list[tuple], annotations: list[tuple], genotypes: _Calls,
           new_ids: bool, unique_samples: bool) -> Parsed:
    rows = {VARIANTS.name: Rows(_SITE, sites), ANNOTATIONS.name: Rows(_ANNOTATION, annotations)} if sites else {}
    if len(genotypes):
        rows[GENOTYPES.name] = genotypes
    distinct = {VARIANTS.name, ANNOTATIONS.name} | ({GENOTYPES.name} if unique_samples else set())
    return Parsed(rows=rows, distinct=frozenset(distinct if new_ids else ()))


def _record_error(path: Path, number: int, samples: int, error: Exception) -> str:
    """One sentence naming the line of the `number`-th record and what is wrong with it.
    htslib only says that it failed, so look at the line ourselves."""
    line_no, line = _data_line(path, number)
    where = f"Line {line_no} (record {number})" if line_no else f"Record {number}"
    cols = line.rstrip("\n").split("\t") if line is not None else []
    if line is None:
        why = f"could not be read ({error})"
    elif len(cols) < 8:
        why = f"has {len(cols)} tab-separated columns where a VCF record needs at least 8"
    elif not cols[1].isdigit():
        why = f"has POS {cols[1]!r}, which is not a positive whole number"
    elif not cols[3] or cols[3] == ".":
        why = "has no REF allele"
    elif samples and len(cols) != 9 + samples:
        why = f"has {max(len(cols) - 9, 0)} sample columns where the header names {samples} samples"
    else:
        why = f"was rejected by htslib ({error})"
    return f"{where} {why}; fix or remove that line and drop the file again."


_MANDATORY = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]


def _header_error(path: Path, error: Exception) -> str:
    """One sentence naming the header line htslib refused and what is wrong with it."""
    lines = _header_lines(path)
    if not lines:
        return "The file is empty or not VCF/BCF; a VCF starts with a ##fileformat=VCFv4.x line."
    if not lines[0].startswith("##fileformat=VCF"):
        return (f"Line 1 is {lines[0].strip()[:40]!r}, not ##fileformat=VCFv4.x; the file is not a VCF "
                "or its header is missing.")
    for no, line in enumerate(lines, start=1):
        if line.startswith("##"):
            if "=" not in line:
                return f"Header line {no} has no key=value; fix the meta line."
            continue
        if line.startswith("#"):
            cols = line.rstrip("\n").split("\t")
            if cols[:8] != _MANDATORY:
                return (f"Header line {no} (#CHROM) has columns {cols[:8]}, not the 8 "
                        "mandatory VCF columns in order; fix the column names.")
            if len(cols) > 9 and any(not c.strip() for c in cols[9:]):
                return (f"Header line {no} (#CHROM) has an empty sample name (a trailing "
                        "tab?); remove it or name the sample.")
            break
        return f"Line {no} is a data line before any #CHROM header line; add the header."
    return f"The VCF header could not be parsed ({error}); check the ## meta lines and the #CHROM line."


def _open_text(path: Path):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", errors="replace") if gz else open(path, errors="replace")


def _header_lines(path: Path) -> list[str]:
    """The header lines of a plain or gzipped VCF and the first line after them (empty
    when unreadable)."""
    out = []
    try:
        with _open_text(path) as f:
            for line in f:
                out.append(line)
                if not line.startswith("#"):
                    break
    except (OSError, EOFError, UnicodeDecodeError):
        pass
    return out


def _data_line(path: Path, number: int) -> tuple[int | None, str | None]:
    try:
        with _open_text(path) as f:
            seen = 0
            for line_no, line in enumerate(f, start=1):
                if line.startswith("#") or not line.strip():
                    continue
                seen += 1
                if seen == number:
                    return line_no, line
    except (OSError, EOFError):
        pass
    return None, None


# ------------------------------------------------------------------ the manifest


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


def parse(path: Path) -> Parsed | Iterator[Parsed]:
    if path.suffix.lower() == ".csv":
        return parse_manifest(path)
    return stream_vcf(path)


VCF = Modality(name="vcf", patterns=["**/*.vcf", "**/*.vcf.gz", "**/*.bcf", "**/*.csv"],
               tables=[VARIANTS, GENOTYPES, ANNOTATIONS, SAMPLES], parse=parse, streams=True,
               # A genotype row is ~100 bytes: half a million (one being written while
               # the next is buffered) bound memory to ~0.5 GB, with fewer commits than 200k.
               # Flushed from 100,000 when the writer is idle: it starts on the first
               # pieces instead of after the first 500,000, and then writes as fast as
               # the parse goes (bench/vcf.py: ~5% less time per 2M genotypes, and 40%
               # fewer page faults: smaller flushes reuse the memory of the last).
               flush_rows=500_000, flush_idle_rows=100_000)
