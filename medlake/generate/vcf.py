"""A multi-sample cohort VCF (BGZF-compressed) and its sample manifest.

Sequencing labs deliver a joint-called VCF keyed by lab sample ids plus a
manifest mapping those ids to the hospital MRN; the lake must join them. The
variants sit in real genes at plausible GRCh38 positions with ClinVar-style
significance and VEP-style CSQ annotations. Breast-cancer patients carry a
pathogenic BRCA1/BRCA2 variant, so genotype-phenotype questions have answers.

BGZF is written here with zlib (gzip members with the "BC" extra field, mtime 0,
and the standard 28-byte EOF block) so htslib/cyvcf2 can read the file and the
bytes are identical on every run.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from medlake.generate import model as m

BGZF_BLOCK = 65280  # htslib's maximum uncompressed block size
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
CSQ_FORMAT = "Allele|Consequence|IMPACT|SYMBOL|Gene|Feature_type|Feature|BIOTYPE|HGVSc|HGVSp"
# snpEff's ANN header text; its field order differs from VEP's, as in real files
ANN_FORMAT = ("Allele | Annotation | Annotation_Impact | Gene_Name | Gene_ID | Feature_Type | "
              "Feature_ID | Transcript_BioType | Rank | HGVS.c | HGVS.p | cDNA.pos / cDNA.length | "
              "CDS.pos / CDS.length | AA.pos / AA.length | Distance | ERRORS / WARNINGS / INFO")
CLNSIG_VALUES = ("Pathogenic", "Likely_pathogenic", "Uncertain_significance", "Likely_benign", "Benign")

# GRCh38 contig lengths for the chromosomes used
CONTIGS = {"chr1": 248956422, "chr2": 242193529, "chr3": 198295559, "chr5": 181538259, "chr6": 170805979,
           "chr7": 159345973, "chr10": 133797422, "chr11": 135086622, "chr12": 133275309,
           "chr13": 114364328, "chr14": 107043718, "chr16": 90338345, "chr17": 83257441,
           "chr19": 58617616, "chr22": 50818468}

# symbol: (chrom, start, end, NCBI gene id, Ensembl gene, canonical transcript)
GENES = {
    "BRCA1": ("chr17", 43044295, 43125483, 672, "ENSG00000012048", "ENST00000357654"),
    "BRCA2": ("chr13", 32315474, 32400266, 675, "ENSG00000139618", "ENST00000380152"),
    "TP53": ("chr17", 7668402, 7687550, 7157, "ENSG00000141510", "ENST00000269305"),
    "CFTR": ("chr7", 117480025, 117668665, 1080, "ENSG00000001626", "ENST00000003084"),
    "APOE": ("chr19", 44905796, 44909393, 348, "ENSG00000130203", "ENST00000252486"),
    "LDLR": ("chr19", 11089462, 11133820, 3949, "ENSG00000130164", "ENST00000558518"),
    "MTHFR": ("chr1", 11785723, 11806455, 4524, "ENSG00000177000", "ENST00000376590"),
    "HFE": ("chr6", 26087281, 26098343, 3077, "ENSG00000010704", "ENST00000357618"),
    "PCSK9": ("chr1", 55039548, 55064852, 255738, "ENSG00000169174", "ENST00000302118"),
    "MLH1": ("chr3", 36993332, 37050918, 4292, "ENSG00000076242", "ENST00000231790"),
    "MSH2": ("chr2", 47403067, 47634501, 4436, "ENSG00000095002", "ENST00000233146"),
    "APC": ("chr5", 112707498, 112846239, 324, "ENSG00000134982", "ENST00000257430"),
    "ATM": ("chr11", 108223067, 108369102, 472, "ENSG00000149311", "ENST00000278616"),
    "CHEK2": ("chr22", 28687743, 28742422, 11200, "ENSG00000183765", "ENST00000404276"),
    "PALB2": ("chr16", 23603160, 23641310, 79728, "ENSG00000083093", "ENST00000261584"),
    "F5": ("chr1", 169511951, 169586481, 2153, "ENSG00000198734", "ENST00000367797"),
    "HBB": ("chr11", 5225464, 5229395, 3043, "ENSG00000244734", "ENST00000335295"),
    "CYP2C19": ("chr10", 94762681, 94855547, 1557, "ENSG00000165841", "ENST00000371321"),
    "SLCO1B1": ("chr12", 21130388, 21239796, 10599, "ENSG00000134538", "ENST00000256958"),
    "VKORC1": ("chr16", 31090854, 31096500, 79001, "ENSG00000167397", "ENST00000394975"),
    "MYH7": ("chr14", 23412740, 23435660, 4625, "ENSG00000092054", "ENST00000355349"),
}

IMPACT = {"frameshift_variant": "HIGH", "stop_gained": "HIGH", "missense_variant": "MODERATE",
          "inframe_deletion": "MODERATE", "synonymous_variant": "LOW", "intron_variant": "MODIFIER",
          "3_prime_UTR_variant": "MODIFIER", "upstream_gene_variant": "MODIFIER"}

# Well-known variants: (gene, pos, rsid, ref, alt, clnsig, consequence, HGVSc, HGVSp, population AF)
KNOWN = (
    ("BRCA1", 43124027, "rs80357914", "ACT", "A", "Pathogenic", "frameshift_variant", "c.68_69del",
     "p.Glu23ValfsTer17", 0.0005),
    ("BRCA1", 43057062, "rs80357906", "T", "TG", "Pathogenic", "frameshift_variant", "c.5266dup",
     "p.Gln1756ProfsTer74", 0.0003),
    ("BRCA1", 43071077, "rs1799966", "T", "C", "Benign", "missense_variant", "c.4900A>G", "p.Ser1634Gly", 0.33),
    ("BRCA2", 32340300, "rs80359550", "GT", "G", "Pathogenic", "frameshift_variant", "c.5946del",
     "p.Ser1982ArgfsTer22", 0.0004),
    ("BRCA2", 32332592, "rs144848", "A", "C", "Benign", "missense_variant", "c.1114A>C", "p.Asn372His", 0.28),
    ("TP53", 7675088, "rs28934578", "C", "T", "Pathogenic", "missense_variant", "c.524G>A", "p.Arg175His",
     0.0001),
    ("TP53", 7676154, "rs1042522", "G", "C", "Benign", "missense_variant", "c.215C>G", "p.Pro72Arg", 0.6),
    ("CFTR", 117559590, "rs113993960", "ATCT", "A", "Pathogenic", "inframe_deletion", "c.1521_1523del",
     "p.Phe508del", 0.01),
    ("CFTR", 117587806, "rs75527207", "G", "A", "Pathogenic", "missense_variant", "c.1652G>A", "p.Gly551Asp",
     0.001),
    ("APOE", 44908684, "rs429358", "T", "C", "Uncertain_significance", "missense_variant", "c.388T>C",
     "p.Cys130Arg", 0.14),
    ("APOE", 44908822, "rs7412", "C", "T", "Benign", "missense_variant", "c.526C>T", "p.Arg176Cys", 0.07),
    ("LDLR", 11116926, "rs688", "C", "T", "Benign", "synonymous_variant", "c.1773C>T", "", 0.4),
    ("MTHFR", 11796321, "rs1801133", "G", "A", "Benign", "missense_variant", "c.665C>T", "p.Ala222Val", 0.3),
    ("MTHFR", 11794419, "rs1801131", "T", "G", "Benign", "missense_variant", "c.1286A>C", "p.Glu429Ala", 0.25),
    ("HFE", 26092913, "rs1800562", "G", "A", "Pathogenic", "missense_variant", "c.845G>A", "p.Cys282Tyr", 0.05),
    ("HFE", 26090951, "rs1799945", "C", "G", "Benign", "missense_variant", "c.187C>G", "p.His63Asp", 0.12),
    ("PCSK9", 55039974, "rs11591147", "G", "T", "Benign", "missense_variant", "c.137G>T", "p.Arg46Leu", 0.02),
    ("MLH1", 37025636, "rs1799977", "A", "G", "Benign", "missense_variant", "c.655A>G", "p.Ile219Val", 0.2),
    ("CHEK2", 28695868, "rs555607708", "AG", "A", "Pathogenic", "frameshift_variant", "c.1100del",
     "p.Thr367MetfsTer15", 0.002),
    ("F5", 169549811, "rs6025", "C", "T", "Pathogenic", "missense_variant", "c.1601G>A", "p.Arg534Gln", 0.02),
    ("HBB", 5227002, "rs334", "T", "A", "Pathogenic", "missense_variant", "c.20A>T", "p.Glu7Val", 0.01),
    ("SLCO1B1", 21178615, "rs4149056", "T", "C", "Benign", "missense_variant", "c.521T>C", "p.Val174Ala", 0.15),
    ("VKORC1", 31096368, "rs9923231", "C", "T", "Benign", "upstream_gene_variant", "c.-1639G>A", "", 0.35),
)
AMINO = ("Ala", "Arg", "Asn", "Asp", "Cys", "Gln", "Glu", "Gly", "His", "Ile", "Leu", "Lys", "Met", "Phe",
         "Pro", "Ser", "Thr", "Trp", "Tyr", "Val")


@dataclass
class Variant:
    """One VCF record before genotypes (alts/clnsig/annotations are per ALT allele)."""

    gene: str
    pos: int
    rsid: str
    ref: str
    alts: list[str]
    clnsig: list[str]
    consequences: list[tuple[str, str, str]]  # (consequence, HGVSc, HGVSp) per ALT
    afs: list[float]
    qual: float
    filter: str = "PASS"

    @property
    def chrom(self) -> str:
        """Chromosome of the gene."""
        return GENES[self.gene][0]

    @property
    def pathogenic(self) -> bool:
        """Whether any ALT is (likely) pathogenic."""
        return any(s in ("Pathogenic", "Likely_pathogenic") for s in self.clnsig)


# ------------------------------------------------------------------ variants


def make_variants(rng: random.Random) -> list[Variant]:
    """40–80 variants: the well-known ones plus gene-local synthetic ones, sorted by position."""
    variants = [Variant(g, pos, rs, ref, [alt], [sig], [(csq, c, p)], [af], round(rng.uniform(200, 3000), 1))
                for g, pos, rs, ref, alt, sig, csq, c, p, af in KNOWN]
    used = {(v.chrom, v.pos) for v in variants}
    variants.append(_multiallelic(rng, used))
    total = rng.randint(40, 80)
    while len(variants) < total:
        variants.append(_synthetic(rng, used))
    for v in rng.sample([v for v in variants if not v.pathogenic and v.rsid == "."], 2):
        v.qual, v.filter = round(rng.uniform(12, 29), 1), "LowQual"
    return sorted(variants, key=lambda v: (_chrom_order(v.chrom), v.pos))


def _chrom_order(chrom: str) -> int:
    """Natural chromosome order (chr2 before chr10)."""
    name = chrom.removeprefix("chr")
    return int(name) if name.isdigit() else {"X": 23, "Y": 24, "M": 25}.get(name, 26)


class GeneFull(ValueError):
    """No position is left in a gene for another record (a benchmark-sized file)."""


# A gene with room left yields a free position in a few tries; this many failing in a row
# means it is full (a small gene such as APOE holds a few hundred records).
_TRIES = 10_000


def _free_pos(rng: random.Random, gene: str, used: set) -> int:
    """A position inside the gene not used by another record. A full gene is marked so in
    `used` (as ("full", gene)) and raises GeneFull from then on without trying again."""
    chrom, start, end = GENES[gene][:3]
    if ("full", gene) not in used:
        for _ in range(_TRIES):
            pos = rng.randint(start + 100, end - 100)
            if all((chrom, pos + d) not in used for d in range(-4, 5)):
                used.add((chrom, pos))
                return pos
        used.add(("full", gene))
    raise GeneFull(f"{gene} has no free position left for another variant")


def _multiallelic(rng: random.Random, used: set) -> Variant:
    """One site with two ALT alleles (ALT 'A,T'), as joint calling produces."""
    pos = _free_pos(rng, "PCSK9", used)
    n = rng.randint(300, 2000)
    return Variant("PCSK9", pos, ".", "G", ["A", "T"], ["Uncertain_significance", "Benign"],
                   [("missense_variant", f"c.{n}G>A", f"p.Gly{n // 3}Asp"),
                    ("synonymous_variant", f"c.{n}G>T", "")],
                   [0.08, 0.03], round(rng.uniform(200, 2000), 1))


def _synthetic(rng: random.Random, used: set) -> Variant:
    """A plausible SNV or small indel in a catalog gene, mostly benign or VUS."""
    genes = sorted(GENES)
    while True:
        gene = rng.choice(genes)
        try:
            pos = _free_pos(rng, gene, used)
            break
        except GeneFull:  # another gene, among those with room
            genes = [g for g in genes if ("full", g) not in used]
            if not genes:
                raise GeneFull(f"all {len(GENES)} catalog genes are full; ask for fewer sites") from None
    ref = rng.choice("ACGT")
    n = rng.randint(50, 4000)
    kind = rng.random()
    if kind < 0.12:  # small deletion
        ref = ref + "".join(rng.choice("ACGT") for _ in range(3))
        alt, csq, c, p = ref[0], "inframe_deletion", f"c.{n}_{n + 2}del", f"p.{rng.choice(AMINO)}{n // 3}del"
    elif kind < 0.18:  # small insertion
        alt = ref + rng.choice("ACGT")
        csq, c, p = "intron_variant", f"c.{n}+{rng.randint(20, 400)}dup", ""
    else:
        alt = rng.choice([b for b in "ACGT" if b != ref])
        csq = rng.choice(("missense_variant", "synonymous_variant", "intron_variant", "3_prime_UTR_variant"))
        c = {"intron_variant": f"c.{n}+{rng.randint(20, 400)}{ref}>{alt}",
             "3_prime_UTR_variant": f"c.*{rng.randint(10, 900)}{ref}>{alt}"}.get(csq, f"c.{n}{ref}>{alt}")
        p = f"p.{rng.choice(AMINO)}{n // 3}{rng.choice(AMINO)}" if csq == "missense_variant" else ""
    sig = rng.choices(("Benign", "Likely_benign", "Uncertain_significance"), weights=(35, 30, 35))[0]
    af = rng.uniform(0.01, 0.4) if sig != "Uncertain_significance" else rng.uniform(0.0005, 0.02)
    return Variant(gene, pos, ".", ref, [alt], [sig], [(csq, c, p)], [round(af, 4)],
                   round(rng.uniform(60, 3000), 1))


# ----------------------------------------------------------------- genotypes


def make_genotypes(rng: random.Random, variants: list[Variant], carriers: list[bool]) -> list[list[str]]:
    """FORMAT strings (GT:DP:GQ:AD) per variant per sample.

    Mostly 0/0 with carriers at the population frequency, about 1.5% missing
    calls, a quarter of calls phased; samples flagged in `carriers` get one
    pathogenic BRCA1/BRCA2 allele.
    """
    brca = [i for i, v in enumerate(variants) if v.gene in ("BRCA1", "BRCA2") and v.pathogenic]
    rows = [[""] * len(carriers) for _ in variants]
    for s, carrier in enumerate(carriers):
        forced = rng.choice(brca) if carrier else None
        for i, v in enumerate(variants):
            rows[i][s] = _call(rng, v, forced == i)
    return rows


def _call(rng: random.Random, v: Variant, force_het: bool) -> str:
    """One sample's call at one site."""
    if not force_het and rng.random() < 0.015:
        return "./.:.:.:."
    if force_het:
        alleles = [0, 1]
    else:
        alleles = [_allele(rng, v.afs) for _ in range(2)]
    alleles.sort()
    phased = rng.random() < 0.25
    if phased and rng.random() < 0.5:
        alleles.reverse()
    gt = ("|" if phased else "/").join(map(str, alleles))
    dp = rng.randint(18, 70)
    ad = _depths(rng, dp, alleles, len(v.alts) + 1)
    gq = 99 if rng.random() < 0.7 else rng.randint(20, 98)
    return f"{gt}:{dp}:{gq}:{','.join(map(str, ad))}"


def _allele(rng: random.Random, afs: list[float]) -> int:
    """Draw one allele index given per-ALT frequencies (capped: most calls are reference)."""
    r = rng.random()
    for k, af in enumerate(afs, start=1):
        share = min(af, 0.45)
        if r < share:
            return k
        r -= share
    return 0


def _depths(rng: random.Random, dp: int, alleles: list[int], n_alleles: int) -> list[int]:
    """Allelic depths consistent with the genotype."""
    ad = [0] * n_alleles
    if alleles[0] == alleles[1]:
        err = rng.randint(0, 1)
        ad[alleles[0]] = dp - err
        ad[0 if alleles[0] else 1] += err
    else:
        first = sum(rng.random() < 0.5 for _ in range(dp))
        ad[alleles[0]] += first
        ad[alleles[1]] += dp - first
    return ad


# -------------------------------------------------------------------- output


def _info(v: Variant, calls: list[str], annotation: str = "CSQ") -> str:
    """INFO: DP and AF from the cohort's calls, ClinVar significance, gene and VEP CSQ
    (or snpEff ANN)."""
    counts = [0] * (len(v.alts) + 1)
    depth = 0
    for call in calls:
        gt, dp = call.split(":")[:2]
        if gt.startswith("."):
            continue
        depth += int(dp)
        for a in gt.replace("|", "/").split("/"):
            counts[int(a)] += 1
    called = sum(counts)
    afs = ",".join(_num(counts[k] / called if called else 0.0) for k in range(1, len(counts)))
    _, _, _, entrez, ensg, enst = GENES[v.gene]
    if annotation == "ANN":
        ann = ",".join(f"{alt}|{c}|{IMPACT[c]}|{v.gene}|{ensg}|transcript|{enst}|protein_coding|"
                       f"{1 + v.pos % 20}/21|{hc}|{hp}||||||" for alt, (c, hc, hp) in zip(v.alts, v.consequences))
        return f"DP={depth};AF={afs};CLNSIG={','.join(v.clnsig)};GENEINFO={v.gene}:{entrez};ANN={ann}"
    csq = ",".join(f"{_csq_allele(v.ref, alt)}|{c}|{IMPACT[c]}|{v.gene}|{ensg}|Transcript|{enst}|protein_coding|"
                   f"{enst}:{hc}|{hp}" for alt, (c, hc, hp) in zip(v.alts, v.consequences))
    return f"DP={depth};AF={afs};CLNSIG={','.join(v.clnsig)};GENEINFO={v.gene}:{entrez};CSQ={csq}"


def _num(x: float) -> str:
    """Compact decimal for AF."""
    return f"{x:.4f}".rstrip("0").rstrip(".") or "0"


def _csq_allele(ref: str, alt: str) -> str:
    """VEP's allele notation: inserted bases, '-' for a deletion, else the ALT base."""
    if len(ref) == 1 and len(alt) > 1 and alt.startswith(ref):
        return alt[1:]
    if len(alt) == 1 and len(ref) > 1 and ref.startswith(alt):
        return "-"
    return alt


def header_lines(samples: list[str], annotation: str = "CSQ", version: str = "4.2") -> list[str]:
    """VCF meta-information and the #CHROM line."""
    described = (f'##INFO=<ID=ANN,Number=.,Type=String,Description="Functional annotations: \'{ANN_FORMAT}\' ">'
                 if annotation == "ANN" else
                 f'##INFO=<ID=CSQ,Number=.,Type=String,Description="Consequence annotations from Ensembl VEP. '
                 f'Format: {CSQ_FORMAT}">')
    lines = [f"##fileformat=VCFv{version}", "##fileDate=20260101", "##source=medlake-generate", "##reference=GRCh38"]
    lines += [f"##contig=<ID={c},length={n},assembly=GRCh38>" for c, n in
              sorted(CONTIGS.items(), key=lambda kv: _chrom_order(kv[0]))]
    lines += [
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Combined depth across samples">',
        '##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency for each ALT allele in the cohort">',
        '##INFO=<ID=CLNSIG,Number=.,Type=String,Description="Clinical significance for this single variant '
        '(ClinVar): Pathogenic, Likely_pathogenic, Uncertain_significance, Likely_benign, Benign">',
        '##INFO=<ID=GENEINFO,Number=1,Type=String,Description="Gene symbol and NCBI Gene ID, SYMBOL:GENEID">',
        described,
        '##FILTER=<ID=LowQual,Description="Low quality (QUAL < 30)">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">',
        '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">',
        '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths for the ref and alt alleles">',
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]
                  + (["FORMAT"] + samples if samples else [])),
    ]
    return lines


def record_line(v: Variant, calls: list[str], annotation: str = "CSQ") -> str:
    """One data line."""
    cols = [v.chrom, str(v.pos), v.rsid, v.ref, ",".join(v.alts), f"{v.qual:.1f}", v.filter,
            _info(v, calls, annotation)]
    if calls:
        cols += ["GT:DP:GQ:AD"] + calls
    return "\t".join(cols)


def render_vcf(rng: random.Random, patients: list[m.Patient]) -> tuple[str, list[Variant]]:
    """The whole VCF text for the patients that have a sample id; returns (text, variants)."""
    sampled = [p for p in patients if p.sample_id]
    variants = make_variants(rng)
    rows = make_genotypes(rng, variants, [p.has("breast_cancer") for p in sampled])
    lines = header_lines([p.sample_id for p in sampled])
    lines += [record_line(v, row) for v, row in zip(variants, rows)]
    return "\n".join(lines) + "\n", variants


def panel_variants(rng: random.Random, used: set) -> list[Variant]:
    """A follow-up gene panel: a tri-allelic SNV site, a padded multi-allelic indel site
    (REF ATG, ALT A and ATGTG: the second allele trims to an insertion A>ATG), a padded MNP
    (CAG>CTG trims to A>T one base on) and a pathogenic MLH1 frameshift."""
    def at(gene):
        return _free_pos(rng, gene, used)

    n = rng.randint(100, 2000)
    return sorted([
        Variant("MLH1", at("MLH1"), ".", "C", ["T", "G", "A"],
                ["Uncertain_significance", "Benign", "Likely_benign"],
                [("missense_variant", f"c.{n}C>T", f"p.Arg{n // 3}Trp"),
                 ("synonymous_variant", f"c.{n}C>G", ""), ("synonymous_variant", f"c.{n}C>A", "")],
                [0.05, 0.1, 0.02], round(rng.uniform(200, 2000), 1)),
        Variant("MSH2", at("MSH2"), ".", "ATG", ["A", "ATGTG"], ["Likely_benign", "Uncertain_significance"],
                [("inframe_deletion", f"c.{n}_{n + 1}del", ""), ("intron_variant", f"c.{n}+12_{n}+13dup", "")],
                [0.1, 0.04], round(rng.uniform(200, 2000), 1)),
        Variant("APC", at("APC"), ".", "CAG", ["CTG"], ["Uncertain_significance"],
                [("missense_variant", f"c.{n + 1}A>T", f"p.Gln{n // 3}Leu")], [0.03],
                round(rng.uniform(200, 2000), 1)),
        Variant("MLH1", at("MLH1"), ".", "AG", ["A"], ["Pathogenic"],
                [("frameshift_variant", f"c.{n + 7}del", f"p.Gly{n // 3}fs")], [0.02],
                round(rng.uniform(200, 2000), 1)),
    ], key=lambda v: (_chrom_order(v.chrom), v.pos))


def render_panel(rng: random.Random, patients: list[m.Patient], used: set) -> tuple[str, list[Variant]]:
    """A VCF 4.3 file annotated by snpEff (ANN) for the same samples."""
    sampled = [p for p in patients if p.sample_id]
    variants = panel_variants(rng, used)
    rows = [[_call(rng, v, False) for _ in sampled] for v in variants]
    lines = header_lines([p.sample_id for p in sampled], annotation="ANN", version="4.3")
    lines += [record_line(v, row, "ANN") for v, row in zip(variants, rows)]
    return "\n".join(lines) + "\n", variants


def bgzf_compress(data: bytes) -> bytes:
    """BGZF: independent gzip members (≤ 65280 input bytes each) with BSIZE in a 'BC' extra field."""
    return b"".join(bgzf_blocks([data]))


def bgzf_blocks(parts: Iterable[bytes]) -> Iterator[bytes]:
    """The BGZF members of the bytes `parts` join into, cut every BGZF_BLOCK bytes of that
    whole, then the EOF member: a file of any size written in bounded memory."""
    pending = bytearray()
    for part in parts:
        pending += part
        while len(pending) >= BGZF_BLOCK:
            yield _bgzf_block(bytes(pending[:BGZF_BLOCK]))
            del pending[:BGZF_BLOCK]
    if pending:
        yield _bgzf_block(bytes(pending))
    yield BGZF_EOF


def _bgzf_block(chunk: bytes) -> bytes:
    """One BGZF member; falls back to stored deflate if compression would overflow 64 KiB."""
    comp = _deflate(chunk, 6)
    if len(comp) + 26 > 65536:
        comp = _deflate(chunk, 0)
    header = struct.pack("<4BI2BH2BHH", 31, 139, 8, 4, 0, 0, 255, 6, 66, 67, 2, len(comp) + 25)
    return header + comp + struct.pack("<II", zlib.crc32(chunk) & 0xFFFFFFFF, len(chunk))


def _deflate(chunk: bytes, level: int) -> bytes:
    """Raw deflate (no zlib header), as gzip members carry it."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(chunk) + c.flush()


def write_vcf(vcf_dir: Path, rng: random.Random, patients: list[m.Patient]) -> tuple[list[Path], int, int]:
    """Write cohort.vcf.gz (VEP CSQ), panel.snpeff.vcf (snpEff ANN, VCF 4.3), a header-only
    rerun.vcf (a sequencing run that called nothing) and sample_manifest.csv; returns
    (vcf paths, variant records across the files, samples)."""
    vcf_dir.mkdir(parents=True, exist_ok=True)
    text, variants = render_vcf(rng, patients)
    path = vcf_dir / "cohort.vcf.gz"
    path.write_bytes(bgzf_compress(text.encode("ascii")))
    panel_text, panel = render_panel(rng, patients, {(v.chrom, v.pos) for v in variants})
    (vcf_dir / "panel.snpeff.vcf").write_text(panel_text, encoding="ascii", newline="\n")
    sampled = [p for p in patients if p.sample_id]
    (vcf_dir / "rerun.vcf").write_text("\n".join(header_lines([p.sample_id for p in sampled])) + "\n",
                                       encoding="ascii", newline="\n")
    manifest = "sample_id,mrn\n" + "".join(f"{p.sample_id},{p.mrn}\n" for p in sampled)
    (vcf_dir / "sample_manifest.csv").write_text(manifest, encoding="ascii", newline="")
    paths = [path, vcf_dir / "panel.snpeff.vcf", vcf_dir / "rerun.vcf"]
    return paths, len(variants) + len(panel), len(sampled)


def write_cohort_scale_vcf(path: Path, samples: int, sites: int, seed: int = 0) -> Path:
    """A bgzipped cohort VCF of `samples` x `sites` with the same kinds of variants and
    calls as the sample data (for benchmarks: sizes the patient generator cannot reach)."""
    rng = random.Random(seed)
    used: set = set()
    variants = sorted((_synthetic(rng, used) for _ in range(sites)),
                      key=lambda v: (_chrom_order(v.chrom), v.pos))
    names = [f"S{i:06d}" for i in range(samples)]
    lines = chain(["\n".join(header_lines(names))],
                  (record_line(v, [_call(rng, v, False) for _ in names]) for v in variants))
    with open(path, "wb") as f:  # streamed: a 20M-genotype file's text would be ~1 GB
        for block in bgzf_blocks((line + "\n").encode("ascii") for line in lines):
            f.write(block)
    return path
