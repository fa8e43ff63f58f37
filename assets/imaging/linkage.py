"""How completely imaging links up: DICOM studies to persons and reports, reports to
studies. Plain counting over `gold.imaging_report`, and the asset check that shows it."""
import dagster as dg

from medlake import lake

IMAGING_REPORT = "gold.imaging_report"


def linkage_counts() -> dict[str, int]:
    """Studies and reports by how they link; all unlinked counts are 0 when complete."""
    got = lake.read(IMAGING_REPORT, """
        SELECT
            count(*) FILTER (WHERE has_dicom) AS dicom_studies,
            count(*) FILTER (WHERE has_report) AS reports,
            count(*) FILTER (WHERE has_dicom AND NOT has_report) AS studies_without_report,
            count(*) FILTER (WHERE has_dicom AND (person_key IS NULL OR NOT person_in_ehr))
                AS studies_without_ehr_person,
            count(*) FILTER (WHERE has_report AND NOT has_dicom) AS reports_without_dicom_study
        FROM t""").to_pylist()
    return {k: int(v or 0) for k, v in got[0].items()} if got else {}


UNLINKED = ("studies_without_report", "studies_without_ehr_person", "reports_without_dicom_study")


@dg.asset_check(asset=dg.AssetKey(IMAGING_REPORT.split(".")), name="imaging_linkage",
                description="Counts DICOM studies with no radiology report or no EHR patient, "
                "and reports with no DICOM study. Any unlinked row is reported as a warning: "
                "look for missing DICOM files, a wrong PatientID or a missing accession.")
def imaging_linkage() -> dg.AssetCheckResult:
    counts = linkage_counts()
    unlinked = {k: counts.get(k, 0) for k in UNLINKED}
    return dg.AssetCheckResult(passed=not any(unlinked.values()),
                               severity=dg.AssetCheckSeverity.WARN,
                               metadata={k: dg.MetadataValue.int(v) for k, v in counts.items()})
