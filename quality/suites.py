"""Great Expectations suites, as reviewable data: table → list of (expectation, kwargs).

Kept free of GX imports (GX takes seconds to import) so the Dagster code location can
list the suites at load time; `quality.gx_runner` turns them into GX objects.
"""
from __future__ import annotations

FHIR_TYPE = r"^[A-Z][A-Za-z]+$"
SSN = r"\b\d{3}-\d{2}-\d{4}\b"

SUITES: dict[str, list[tuple[str, dict]]] = {
    "bronze.fhir_resources": [
        ("ExpectTableColumnsToMatchSet", {"column_set": [
            "resource_type", "resource_id", "patient_ref", "last_updated", "resource",
            "source_uri", "source_sha256", "batch_id", "ingested_at"], "exact_match": False}),
        ("ExpectColumnValuesToNotBeNull", {"column": "resource_id"}),
        ("ExpectColumnValuesToNotBeNull", {"column": "resource"}),
        ("ExpectColumnValuesToMatchRegex", {"column": "resource_type", "regex": FHIR_TYPE}),
        ("ExpectCompoundColumnsToBeUnique", {"column_list": ["resource_type", "resource_id"]}),
        ("ExpectColumnValuesToMatchRegex", {"column": "source_sha256", "regex": r"^[0-9a-f]{64}$"}),
    ],
    "silver.document": [
        ("ExpectColumnValuesToNotBeNull", {"column": "document_id"}),
        ("ExpectColumnValuesToBeUnique", {"column": "document_id"}),
        # A social security number in de-identified text means scrubbing failed.
        ("ExpectColumnValuesToNotMatchRegex", {"column": "text", "regex": SSN}),
    ],
}
