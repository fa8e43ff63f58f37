{{ config(alias='variant', meta={'dagster': {'group': 'genomics'}}) }}
-- One row per allele (variant_id = chrom:pos:ref:alt after splitting and trimming; see
-- int_variant_allele). Provenance is the bronze site the allele came from.
select * exclude (site_id)
from {{ ref('int_variant_allele') }}
-- Two files may write one allele differently (padded or not): keep one row per allele.
qualify row_number() over (partition by variant_id order by from_multiallelic, site_id) = 1
