from assets.bronze import bronze_assets
from assets.genomics.vcf import VCF

vcf_assets = bronze_assets(VCF, folder="vcf", group="genomics")
