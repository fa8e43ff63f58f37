"""Great Expectations suites, as reviewable data: one JSON file per table in this folder,
`<schema>.<table>.json`:

    {"table": "silver.document",
     "expectations": [{"type": "ExpectColumnValuesToNotBeNull",
                       "kwargs": {"column": "document_id"},
                       "severity": "error",          # or "warn"
                       "why": "optional: the reason, shown to reviewers"}]}

`severity: error` marks integrity rules whose failure must stop downstream assets;
`warn` marks quality signals that are reported but let the pipeline go on.

Kept free of GX imports (GX takes seconds to import) so the Dagster code location can
list the suites at load time; `quality.gx_runner` turns them into GX objects.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SEVERITIES = ("error", "warn")


@dataclass(frozen=True)
class Expectation:
    type: str
    kwargs: dict
    severity: str = "error"
    why: str = ""


def load_suites(folder: Path = Path(__file__).parent) -> dict[str, list[Expectation]]:
    suites: dict[str, list[Expectation]] = {}
    for path in sorted(folder.glob("*.json")):
        spec = json.loads(path.read_text())
        table = spec["table"]
        if path.stem != table:
            raise ValueError(f"{path.name} declares table {table!r}; name the file {table}.json.")
        items = []
        for e in spec["expectations"]:
            severity = e.get("severity", "error")
            if severity not in SEVERITIES:
                raise ValueError(f"{path.name}: severity {severity!r} is not one of {SEVERITIES}.")
            items.append(Expectation(e["type"], e.get("kwargs", {}), severity, e.get("why", "")))
        suites[table] = items
    return suites


SUITES = load_suites()
