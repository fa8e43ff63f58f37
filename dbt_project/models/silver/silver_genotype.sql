{{ config(alias='genotype', meta={'dagster': {'group': 'genomics'}}) }}
-- One row per (person, ALT allele): the call split per allele like silver.variant, keyed
-- by person_key through the sample manifest. Samples missing from the manifest are left
-- out here and counted by the `samples_linked` asset check on bronze.vcf_genotypes; the
-- lab's sample id is replaced by a pseudonym.
with calls as (
    select
        person_key(m.mrn) as person_key,
        pseudonym('vcf_sample', g.sample_id) as sample_key,
        g.variant_id as site_id, g.gt, g.alleles, g.phased, g.dp, g.gq, g.ad,
        g.batch_id, g.source_sha256
    from {{ source('bronze', 'vcf_genotypes') }} g
    join {{ source('bronze', 'vcf_samples') }} m using (sample_id)
),

per_allele as (
    select
        c.*, v.variant_id, v.alt_index,
        len(list_filter(c.alleles, lambda a: a = v.alt_index)) as alt_allele_count,
        len(list_filter(c.alleles, lambda a: a is not null)) as called_alleles,
        len(c.alleles) as ploidy
    from calls c
    join {{ ref('int_variant_allele') }} v using (site_id)
)

select
    person_key,
    variant_id,
    sample_key,
    gt,
    alt_allele_count,
    case
        when called_alleles = 0 then 'no_call'
        when ploidy = 1 then case when alt_allele_count = 1 then 'hemizygous' else 'reference' end
        when alt_allele_count = 0 then 'reference'
        when alt_allele_count = called_alleles then 'homozygous'
        else 'heterozygous'
    end as zygosity,
    phased,
    dp as read_depth,
    gq as genotype_quality,
    ad[1] as ref_read_depth,
    ad[alt_index + 1] as alt_read_depth,
    batch_id,
    source_sha256
from per_allele
-- One call per person and allele: a person sequenced twice keeps the best-supported call.
qualify row_number() over (partition by person_key, variant_id
                           order by called_alleles desc, gq desc nulls last, sample_key) = 1
