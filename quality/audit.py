"""`medlake audit`: where a table, a row or an AI answer came from.

Plain functions returning dicts (the CLI prints them, `to_html` renders a report):

- `audit_table("silver.document")`: the upstream chain down to the landing files, the
  table's Delta versions with time, Dagster run id and row count, and the latest check
  results from gold.dq_results.
- `audit_row("silver.document", key)`: the bronze rows and source files it came from,
  through the row's `batch_id` and `source_sha256`.
- `audit_answer(answer_id)`: the question, who asked, the model, and each cited chunk
  resolved to its source row at the Delta version used then (time travel), and on to
  its source file.

Nothing here prints an identifier: bronze rows are named by key, file and batch only.
"""
from __future__ import annotations

import html
import json

from medlake import lake
from quality.suites import SUITES

INGEST_LOG = "bronze.ingest_log"
PROVENANCE = ("batch_id", "source_sha256")


def _graph():
    from orchestration.definitions import defs

    return defs.resolve_asset_graph()


def upstream_chain(table: str) -> list[dict]:
    """Every table upstream of `table`, nearest first, with its direct parents."""
    import dagster as dg

    graph = _graph()
    out, seen, todo = [], set(), [dg.AssetKey(table.split("."))]
    while todo:
        key = todo.pop(0)
        if key in seen or not graph.has(key):
            continue
        seen.add(key)
        parents = sorted(graph.get(key).parent_keys, key=lambda k: k.to_user_string())
        out.append({"table": ".".join(key.path),
                    "reads": [".".join(p.path) for p in parents]})
        todo.extend(parents)
    return out


def _runs_by_version(table: str) -> dict[int, str]:
    """Dagster run ids of the materializations that recorded each Delta version."""
    import dagster as dg

    out = {}
    try:
        with dg.DagsterInstance.get() as instance:
            records = instance.fetch_materializations(dg.AssetKey(table.split(".")), limit=200)
            for rec in records.records:
                mat = rec.asset_materialization
                v = mat.metadata.get("delta_version") if mat else None
                if v is not None:
                    out[int(v.value)] = rec.run_id  # newest first: the oldest, the writer, wins
    except Exception:  # no Dagster instance (a lake written outside Dagster): no run ids
        pass
    return out


def versions(table: str, limit: int = 20) -> list[dict]:
    dt = lake.open_table(table)
    if dt is None:
        return []
    runs = _runs_by_version(table)
    out = []
    for h in dt.history(limit):
        v = h.get("version")
        rows = lake.read(table, "SELECT count(*) FROM t", version=v).column(0)[0].as_py()
        ts = h.get("timestamp")
        out.append({"version": v, "operation": h.get("operation"), "rows": rows,
                    "committed_at": _iso(ts), "run_id": runs.get(v)})
    return out


def _iso(ms) -> str | None:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat() if ms else None


def source_files(bronze_table: str, limit: int = 50) -> list[dict]:
    """The landing files a bronze table holds rows of, from the ingest ledger."""
    dt = lake.open_table(bronze_table)
    if dt is None or "source_sha256" not in {f.name for f in lake.arrow_schema(dt)}:
        return []
    shas = lake.read(bronze_table, "SELECT DISTINCT source_sha256 FROM t").column(0).to_pylist()
    return lake.read(INGEST_LOG, "SELECT source_uri, source_sha256, status, rows, batch_id, "
                     "ingested_at::VARCHAR AS ingested_at FROM t WHERE list_contains(?, "
                     "source_sha256) ORDER BY ingested_at DESC LIMIT ?",
                     params=[shas, limit]).to_pylist()


def audit_table(table: str) -> dict:
    from quality.gx_runner import latest_results

    if lake.open_table(table) is None:
        raise LookupError(f"{table} is not in the lake; `medlake run` builds it.")
    chain = upstream_chain(table)
    for link in chain:
        link["versions"] = versions(link["table"], limit=5 if link["table"] != table else 20)
        if link["table"].startswith("bronze.") and not link["reads"]:
            link["source_files"] = source_files(link["table"])
    return {"kind": "table", "table": table, "lineage": chain,
            "checks": [{k: r[k] for k in ("expectation", "column_name", "severity", "success",
                                          "observed_value", "delta_version", "run_id")}
                       | {"validated_at": str(r["validated_at"])} for r in latest_results(table)]}


def key_column(table: str, columns: list[str]) -> str:
    """The table's key: the column its suite declares unique, else the first column."""
    for e in SUITES.get(table, []):
        if e.type == "ExpectColumnValuesToBeUnique" and e.kwargs.get("column") in columns:
            return e.kwargs["column"]
    return columns[0]


def _bronze_rows(batch_id: str | None, sha: str | None, limit: int = 200) -> list[dict]:
    """Bronze rows from the same file and batch, by key (never their content)."""
    out = []
    for table in lake.list_tables("bronze"):
        dt = lake.open_table(table)
        names = [f.name for f in lake.arrow_schema(dt)]
        if "source_sha256" not in names or table == INGEST_LOG:
            continue
        keys = [c for c in ("resource_type", "resource_id", "sop_instance_uid", "variant_id",
                            "sample_id") if c in names]
        cols = [f'"{c}"' for c in [*keys, "source_uri", "batch_id"] if c in names]
        if table == "bronze.fhir_resources":  # the MRN, only to match person_key below
            cols.append("CASE WHEN resource_type = 'Patient' THEN json_extract_string(resource, "
                        "'$.identifier[*]') END AS _ids")
        where = "source_sha256 = ?" + (" AND batch_id = ?" if batch_id and "batch_id" in names else "")
        params = [sha] + ([batch_id] if batch_id and "batch_id" in names else [])
        for r in lake.read(table, f"SELECT {', '.join(cols)} FROM t WHERE {where} LIMIT {limit}",
                           params=params).to_pylist():
            out.append({"table": table, **r})
    return out


def _mrn(ids: list | None) -> str | None:
    for raw in ids or []:
        ident = json.loads(raw)
        if any(c.get("code") == "MR" for c in (ident.get("type") or {}).get("coding", [])):
            return ident.get("value")
    return None


def _the_rows(candidates: list[dict], row: dict, key: str) -> tuple[list[dict], str]:
    """Narrow the file's rows to the one(s) this row was derived from: a resource whose
    keyed pseudonym is the row's key, or the Patient whose MRN gives its person_key."""
    from medlake import privacy

    exact = []
    for c in candidates:
        rt, rid = c.get("resource_type"), c.get("resource_id")
        if rt and rid and privacy.pseudonym(rt, rid) == key:
            exact.append(c)
        elif rt == "Patient" and row.get("person_key") and \
                privacy.person_key(_mrn(c.get("_ids"))) == row["person_key"]:
            exact.append(c)
    chosen = exact or candidates
    return ([{k: v for k, v in c.items() if k != "_ids"} for c in chosen],
            "exact" if exact else "same file and batch")


def audit_row(table: str, key: str, version: int | None = None) -> dict:
    dt = lake.open_table(table)
    if dt is None:
        raise LookupError(f"{table} is not in the lake.")
    columns = [f.name for f in lake.arrow_schema(dt)]
    kc = key_column(table, columns)
    rows = lake.read(table, f'SELECT * FROM t WHERE "{kc}" = ? LIMIT 1', params=[key],
                     version=version).to_pylist()
    if not rows:
        raise LookupError(f"No row of {table} has {kc} = {key!r}.")
    row = rows[0]
    prov = {c: row.get(c) for c in PROVENANCE}
    files = lake.read(INGEST_LOG, "SELECT source_uri, status, batch_id, ingested_at::VARCHAR "
                      "AS ingested_at FROM t WHERE source_sha256 = ?",
                      params=[prov["source_sha256"]]).to_pylist() if prov["source_sha256"] else []
    candidates = _bronze_rows(prov["batch_id"], prov["source_sha256"]) if prov["source_sha256"] else []
    bronze, match = _the_rows(candidates, row, key)
    return {"kind": "row", "table": table, "key_column": kc, "key": key,
            "version": version if version is not None else dt.version(),
            "provenance": prov, "source_files": files, "bronze_rows": bronze, "match": match,
            "lineage": [{"table": table, "version": version if version is not None else dt.version(),
                         "from_bronze": sorted({(b["table"], b.get("resource_type") or "")
                                                for b in bronze}),
                         "from_files": [f["source_uri"] for f in files]}]}


def audit_answer(answer_id: str) -> dict:
    from serving.rag import AUDIT, Citation

    found = lake.read(AUDIT, "SELECT * FROM t WHERE answer_id = ?", params=[answer_id]).to_pylist()
    if not found:
        raise LookupError(f"No answer {answer_id} in {AUDIT}.")
    a = found[0]
    cited = []
    for c in json.loads(a["citations"] or "[]"):
        citation = Citation(**c)
        entry = {**c, "source_row": None}
        try:
            row = audit_row(citation.source_table, citation.source_key, citation.source_version)
            entry["source_row"] = {k: row[k] for k in ("key_column", "version", "provenance",
                                                       "source_files", "bronze_rows", "match")}
        except LookupError as e:
            entry["error"] = str(e)
        cited.append(entry)
    return {"kind": "answer", "answer_id": answer_id, "question": a["question"],
            "asked_by": a["asked_by"], "asked_at": str(a["asked_at"]), "model": a["model"],
            "cited_ok": a["cited_ok"], "answer": a["answer"], "citations": cited,
            "lineage": [{"chunk_id": c["chunk_id"],
                         "source": f'{c["source_table"]}@v{c["source_version"]} {c["source_key"]}',
                         "bronze": sorted({f'{b["table"]} {b.get("resource_type") or ""}'.strip()
                                           for b in (c["source_row"] or {}).get("bronze_rows", [])}),
                         "files": [f["source_uri"] for f in
                                   (c["source_row"] or {}).get("source_files", [])]}
                        for c in cited]}


def to_text(report: dict) -> str:
    return json.dumps(report, indent=2, default=str)


def _render(value) -> str:
    if isinstance(value, dict):
        return "<dl>" + "".join(f"<dt>{html.escape(str(k))}</dt><dd>{_render(v)}</dd>"
                                for k, v in value.items()) + "</dl>"
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            cols = list(dict.fromkeys(k for v in value for k in v))
            head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
            body = "".join("<tr>" + "".join(f"<td>{_render(v.get(c))}</td>" for c in cols)
                           + "</tr>" for v in value)
            return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        return "<ul>" + "".join(f"<li>{_render(v)}</li>" for v in value) + "</ul>"
    return html.escape("" if value is None else str(value))


def to_html(report: dict) -> str:
    """A self-contained page: a Lineage section first, then everything else."""
    title = f"medlake audit: {report['kind']} " + html.escape(
        str(report.get("table") or report.get("answer_id")))
    rest = {k: v for k, v in report.items() if k not in ("lineage", "kind")}
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px;vertical-align:top;font-size:90%}}
dt{{font-weight:bold}}</style></head><body><h1>{title}</h1>
<section id="lineage"><h2>Lineage</h2>{_render(report.get("lineage", []))}</section>
<section id="details"><h2>Details</h2>{_render(rest)}</section></body></html>"""
