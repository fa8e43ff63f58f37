from assets.bronze import bronze_assets
from assets.imaging.dicom import DICOM

dicom_assets = bronze_assets(DICOM, folder="dicom", group="imaging")
