-- One row per (site, ALT allele): multi-allelic sites are split, and each allele is trimmed to
-- its minimal representation (shared trailing bases, then shared leading bases with POS
-- moved on), so the same variant called as CAG>CTG in one file and A>T in another gets
-- one variant_id. Full left-alignment needs the reference genome, which VCFs do not
-- carry; trimming is what the input allows. Symbolic alleles (<DEL>, *, breakends) stay
-- as written.
with sites as (
    select *, string_split(alt, ',') as alts
    from {{ source('bronze', 'vcf_variants') }}
    where alt <> '.'
),

split as (
    select
        s.variant_id as site_id, s.chrom, s.pos, s.ref, s.id, s.qual, s.filters,
        s.gene as site_gene, s.clnsig as site_clnsig, s.af as site_af, s.batch_id,
        s.source_sha256, len(s.alts) as n_alts,
        u.alt_index, s.alts[u.alt_index] as alt
    from sites s, unnest(range(1, len(s.alts) + 1)) as u(alt_index)
),

suffix as (
    select *,
        regexp_matches(alt, '[<>\[\]*.]') or alt = '' as symbolic,
        coalesce(list_max(list_filter(range(0, least(length(ref), length(alt))),
            lambda k: right(ref, k::int) = right(alt, k::int))), 0) as s
    from split
),

suffix_trimmed as (
    select * exclude (ref, alt),
        case when symbolic then ref else left(ref, length(ref) - s::int) end as ref1,
        case when symbolic then alt else left(alt, length(alt) - s::int) end as alt1,
        ref as ref_raw, alt as alt_raw
    from suffix
),

prefix as (
    select *,
        case when symbolic then 0 else coalesce(list_max(list_filter(range(0, least(length(ref1), length(alt1))),
            lambda k: left(ref1, k::int) = left(alt1, k::int))), 0) end as p
    from suffix_trimmed
),

alleles as (
    select
        chrom, pos + p::bigint as pos, substr(ref1, p::int + 1) as ref, substr(alt1, p::int + 1) as alt,
        * exclude (chrom, pos, ref1, alt1, s, p)
    from prefix
),

-- ClinVar CLNSIG and AF hold one value per ALT when their counts match; else the site's.
per_allele as (
    select
        a.*,
        chrom || ':' || pos || ':' || ref || ':' || alt as variant_id,
        case when len(string_split(site_clnsig, ',')) = n_alts
             then string_split(site_clnsig, ',')[alt_index] else site_clnsig end as clinical_significance,
        case when len(site_af) = n_alts then site_af[alt_index] end as af,
        -- VEP writes an allele without the base shared with REF ('-' when nothing is left)
        case when length(ref_raw) > 1 or length(alt_raw) > 1
             then case when left(ref_raw, 1) = left(alt_raw, 1)
                       then coalesce(nullif(substr(alt_raw, 2), ''), '-') else alt_raw end
             else alt_raw end as vep_allele
    from alleles a
),

-- The most severe annotation of each allele (snpEff EFF names no allele: single-ALT sites only).
annotation as (
    select
        p.site_id, p.alt_index, a.source as annotation_source, a.gene as annotation_gene,
        a.consequence, a.impact, a.transcript, a.hgvs_c, a.hgvs_p
    from per_allele p
    join {{ source('bronze', 'vcf_annotations') }} a
        on a.variant_id = p.site_id
       and (a.allele in (p.alt_raw, p.vep_allele) or (a.allele is null and p.n_alts = 1))
    qualify row_number() over (
        partition by p.site_id, p.alt_index
        order by case a.impact when 'HIGH' then 0 when 'MODERATE' then 1 when 'LOW' then 2 else 3 end,
                 a.source, a.n) = 1
)

select
    p.variant_id,
    p.chrom,
    p.pos,
    p.ref,
    p.alt,
    case
        when p.symbolic then 'structural'
        when length(p.ref) = 1 and length(p.alt) = 1 then 'SNV'
        when length(p.ref) = length(p.alt) then 'MNV'
        when length(p.ref) > length(p.alt) then 'deletion'
        else 'insertion'
    end as variant_type,
    p.site_id,
    p.alt_index,
    p.n_alts > 1 as from_multiallelic,
    nullif(p.id, '.') as rs_id,
    p.qual,
    p.filters,
    p.af,
    coalesce(p.site_gene, an.annotation_gene) as gene,
    replace(p.clinical_significance, ' ', '_') as clinical_significance,
    -- ClinVar writes combined calls with '/' or '|' (Pathogenic/Likely_pathogenic).
    coalesce(list_has_any(string_split_regex(p.clinical_significance, '[/|]'),
                          ['Pathogenic', 'Likely_pathogenic']), false) as is_pathogenic,
    an.consequence,
    an.impact,
    an.transcript,
    an.hgvs_c,
    an.hgvs_p,
    an.annotation_source,
    p.batch_id,
    p.source_sha256
from per_allele p
left join annotation an using (site_id, alt_index)
