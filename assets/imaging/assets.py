from assets.bronze import bronze_assets
from assets.imaging.dicom import DICOM
from assets.imaging.linkage import imaging_linkage

dicom_assets = bronze_assets(DICOM, folder="dicom", group="imaging")

imaging_checks = [imaging_linkage]
