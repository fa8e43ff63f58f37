from assets.bronze import bronze_assets
from assets.ehr.fhir import FHIR

fhir_assets = bronze_assets(FHIR, folder="fhir", group="ehr")
