from assets.bronze import bronze_assets
from assets.genomics.linkage import samples_linked
from assets.genomics.vcf import VCF

vcf_assets = bronze_assets(VCF, folder="vcf", group="genomics")

__all__ = ["samples_linked", "vcf_assets"]
