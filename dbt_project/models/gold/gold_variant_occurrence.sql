{{ config(alias='variant_occurrence', meta={'dagster': {'group': 'genomics'}}) }}
-- Variants a person carries, in the shape of the OMOP Genomic CDM's VARIANT_OCCURRENCE
-- (with person_key in place of the OMOP person_id): one row per person and ALT allele
-- with at least one copy, joined with its gene, annotation and clinical significance.
select
    md5(g.person_key || '|' || v.variant_id) as variant_occurrence_id,
    g.person_key,
    v.variant_id,
    v.chrom as chromosome,
    v.pos as genomic_pos_start,
    v.pos + length(v.ref) - 1 as genomic_pos_end,
    v.ref as reference_allele,
    v.alt as alternate_allele,
    v.rs_id,
    v.gene as target_gene1_symbol,
    v.hgvs_c,
    v.hgvs_p,
    v.variant_type as sequence_alteration,
    v.consequence as variant_feature,
    v.impact,
    v.clinical_significance,
    v.is_pathogenic,
    g.zygosity as genotype,
    g.alt_allele_count,
    g.read_depth as variant_read_depth,
    g.alt_read_depth,
    g.genotype_quality,
    v.filters,
    v.qual as quality,
    g.batch_id,
    g.source_sha256
from {{ ref('silver_genotype') }} g
join {{ ref('silver_variant') }} v using (variant_id)
where g.alt_allele_count > 0
