"""VEP `CSQ`, snpEff `ANN` and classic snpEff `EFF` annotations → one structured row per
(variant, annotation).

The field order is read from each file's own header (`Description="... Format: A|B|C"`),
never assumed, because VEP and snpEff runs differ in the fields they emit and their order.
The names of both tools are mapped onto one set of columns.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import orjson

# Our column ← the field names VEP, snpEff ANN and snpEff EFF use for it.
COLUMNS = {
    "allele": ("Allele", "ALLELE"),
    "consequence": ("Consequence", "Annotation", "Effect"),
    "impact": ("IMPACT", "Annotation_Impact", "Effect_Impact"),
    "gene": ("SYMBOL", "Gene_Name"),
    "gene_id": ("Gene", "Gene_ID"),
    "transcript": ("Feature", "Feature_ID", "Transcript", "Transcript_ID"),
    "biotype": ("BIOTYPE", "Transcript_BioType", "Gene_BioType"),
    "hgvs_c": ("HGVSc", "HGVS.c", "Codon_Change"),
    "hgvs_p": ("HGVSp", "HGVS.p", "Amino_Acid_change", "Amino_Acid_Change"),
}
KEYS = ("CSQ", "ANN", "EFF")
# An annotation row's columns, in order.
ROW = ("source", "n", *COLUMNS, "fields")


@dataclass(frozen=True)
class AnnotationFormat:
    key: str  # the INFO key: CSQ, ANN or EFF
    fields: tuple[str, ...]

    @cached_property
    def columns(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Each of our columns with the names, in order of preference, that this format's
        fields have for it."""
        return tuple((col, tuple(n for n in names if n in self.fields)) for col, names in COLUMNS.items())

    @cached_property
    def picks(self) -> tuple[tuple[int, ...], ...]:
        """`columns`, in order, as positions in a row's values: a field named twice holds
        its last value."""
        last = {name: i for i, name in enumerate(self.fields)}
        return tuple(tuple(last[n] for n in names) for _, names in self.columns)

    def parse(self, value: str) -> list[dict]:
        """One INFO value (comma-separated annotations) → rows with our columns plus
        every field as JSON."""
        return [dict(zip(ROW, row)) for row in self.rows(value)]

    def rows(self, value: str) -> list[tuple]:
        """`parse` as tuples in `ROW` order: what ingestion keeps (no dict per row)."""
        rows = []
        width = len(self.fields)
        padding = [""] * width
        for n, entry in enumerate(_split_entries(value)):
            if self.key == "EFF":  # Effect(Impact|Class|...)
                effect, _, rest = entry.partition("(")
                parts = [effect] + rest.rstrip(")").split("|")
            else:
                parts = entry.split("|")
            values = [p.strip() for p in parts]
            if len(values) < width:
                values += padding
            picked = []  # each column's first non-empty field among the names it may have
            for at in self.picks:
                for i in at:
                    if values[i]:
                        picked.append(values[i])
                        break
                else:
                    picked.append(None)
            rows.append((self.key, n, *picked, orjson.dumps(dict(zip(self.fields, values))).decode()))
        return rows


def _split_entries(value) -> list[str]:
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    return [e for e in str(value).split(",") if e.strip()]


def header_formats(header_infos: dict[str, str]) -> list[AnnotationFormat]:
    """Annotation formats declared in a header, from {INFO id: Description}."""
    out = []
    for key in KEYS:
        description = header_infos.get(key)
        if description is None:
            continue
        fields = _fields_from_description(key, description)
        if fields:
            out.append(AnnotationFormat(key, fields))
    return out


def _fields_from_description(key: str, description: str) -> tuple[str, ...]:
    """`...Format: Allele|Consequence|...` (VEP), `'Allele | Annotation | ...'` (ANN),
    `'Effect ( Effect_Impact | ... [ | ERRORS | WARNINGS ] )'` (EFF)."""
    text = description.strip().strip('"')
    m = re.search(r"(?:Format|format)\s*:\s*'?([^']*)'?", text)
    if not m:
        m = re.search(r"'([^']*\|[^']*)'", text)  # snpEff ANN: "Functional annotations: '...'"
    if not m:
        return ()
    spec = m.group(1)
    if key == "EFF":
        effect, _, rest = spec.partition("(")
        rest = re.sub(r"\[.*?\]", "", rest).rstrip(" )")
        names = [effect] + rest.split("|")
    else:
        names = spec.split("|")
    return tuple(n.strip() for n in names if n.strip())
