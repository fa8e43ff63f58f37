"""PHI leak guard: is any identifier known in bronze present anywhere past bronze?

Every identifier value in bronze (FHIR Patient names, identifiers such as MRN and SSN,
telecom, address lines, city, postal code, birth date in several spellings; DICOM
patient name, ID, birth date, address, phone, other IDs and names, accession number,
referring physician) is normalised (lower case, runs of anything but letters and digits
become one space) into a DuckDB table. Each string column of every silver and gold
table, LanceDB `clinical_chunks.text` and `gold.rag_audit` is tokenised the same way and
hash-joined to the values on one anchor token per value; only those candidate pairs are
checked for the whole value as a phrase. Cost grows with text size plus candidates, not
with texts × values.

A name part of three letters or fewer ("Day", "May", "Lee") is too often an ordinary
word to be looked for in everyone's text. It is looked for only in rows of its own
person (a row's `person_key` equal to the value's owner, keyed from the MRN as in
silver), where "twice a day" beside a patient named Day is still a leak worth naming.

A hit names the table, the column, the kind of identifier and how many rows, never the
value itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from medlake import lake

FHIR = "bronze.fhir_resources"
DICOM = "bronze.dicom_instances"
MIN_LENGTH = 3  # shorter values ("Al", "Jo") match too much ordinary text to mean anything

# DICOM attributes holding PHI (PS3.15 Basic Profile), by tag.
DICOM_TAGS = {
    "00100010": "patient_name", "00100020": "patient_id", "00100030": "birth_date",
    "00101040": "address", "00102154": "phone", "00101000": "other_patient_id",
    "00101001": "other_patient_name", "00080050": "accession_number",
    "00080090": "referring_physician",
}

NORM = "trim(regexp_replace(lower({x}), '[^a-z0-9]+', ' ', 'g'))"


@dataclass
class Leak:
    table: str
    column: str
    kind: str
    rows: int

    def __str__(self) -> str:
        return f"{self.table}.{self.column}: {self.rows} row(s) hold a {self.kind}"


# The MRN a Patient resource is keyed by in silver (int_patient_identity): the MR
# identifier, else its FHIR id.
_FHIR_MRN = ("coalesce((SELECT max(json_extract_string(i, '$.value')) "
             "FROM unnest(json_extract(resource, '$.identifier[*]')) AS u(i) "
             "WHERE json_extract_string(i, '$.type.coding[0].code') = 'MR'), "
             "'Patient/' || resource_id)")


def _fhir_values_sql() -> str:
    paths = {"name": ["$.name[*].family", "$.name[*].given[*]"],
             "identifier": ["$.identifier[*].value"], "telecom": ["$.telecom[*].value"],
             "address": ["$.address[*].line[*]", "$.address[*].city"],
             "postal_code": ["$.address[*].postalCode"]}
    parts = [f"SELECT '{kind}' AS kind, unnest(json_extract_string(resource, '{p}')) AS value, "
             f"person_key({_FHIR_MRN}) AS owner FROM {FHIR}_t WHERE resource_type = 'Patient'"
             for kind, ps in paths.items() for p in ps]
    # Birth dates also as written in notes: 1980-03-02, 03/02/1980, 3/2/1980.
    parts.append(f"""SELECT 'birth_date', unnest([d::VARCHAR, strftime(d, '%m/%d/%Y'),
                         strftime(d, '%-m/%-d/%Y')]), NULL
                     FROM (SELECT TRY_CAST(json_extract_string(resource, '$.birthDate') AS DATE) AS d
                           FROM {FHIR}_t WHERE resource_type = 'Patient') WHERE d IS NOT NULL""")
    return " UNION ALL ".join(parts)


def _dicom_values_sql() -> str:
    parts = []
    for tag, kind in DICOM_TAGS.items():
        v = f"unnest(json_extract(header, '$.\"{tag}\".Value[*]'))"
        # PatientID is the MRN (DICOM links to the EHR through it)
        parts.append(f"""SELECT '{kind}' AS kind,
                           unnest(CASE WHEN json_type(x) = 'OBJECT'
                                  THEN string_split(json_extract_string(x, '$.Alphabetic'), '^')
                                  ELSE [json_extract_string(x, '$')] END) AS value,
                           person_key(mrn) AS owner
                         FROM (SELECT {v} AS x,
                                      json_extract_string(header, '$."00100020".Value[0]') AS mrn
                               FROM {DICOM}_t)""")
    parts.append(f"""SELECT 'birth_date', strftime(d, '%Y-%m-%d'), NULL FROM (
                       SELECT TRY_STRPTIME(json_extract_string(header, '$."00100030".Value[0]'),
                                           '%Y%m%d')::DATE AS d FROM {DICOM}_t) WHERE d IS NOT NULL""")
    return " UNION ALL ".join(parts)


def load_identifiers(con: duckdb.DuckDBPyConnection) -> int:
    """Create table `phi(kind, norm, anchor, owner)` from bronze; returns how many values.
    `owner` is the person_key a short name part is matched within; NULL matches anyone."""
    from medlake.privacy import person_key

    con.create_function("person_key", lambda mrn: person_key(mrn), ["VARCHAR"], "VARCHAR")
    sources = []
    for table, sql in ((FHIR, _fhir_values_sql()), (DICOM, _dicom_values_sql())):
        dt = lake.open_table(table)
        if dt is None:
            continue
        con.execute(f"CREATE OR REPLACE VIEW {table.replace('.', '_')}_t AS "
                    f"SELECT * FROM {lake.scan_sql(dt)}")
        sources.append(sql.replace(f"{table}_t", f"{table.replace('.', '_')}_t"))
    if not sources:
        con.execute("CREATE OR REPLACE TABLE phi (kind VARCHAR, norm VARCHAR, anchor VARCHAR, "
                    "owner VARCHAR)")
        return 0
    con.execute(f"""
        CREATE OR REPLACE TABLE phi AS
        WITH raw AS ({' UNION ALL '.join(f'({s})' for s in sources)}),
        normed AS (SELECT kind, {NORM.format(x='value')} AS norm, owner
                   FROM raw WHERE value IS NOT NULL),
        -- only a short name part is bound to its person (module docstring)
        bound AS (SELECT kind, norm, kind LIKE '%name%' AND length(norm) <= 3 AS short_name,
                         owner FROM normed)
        SELECT DISTINCT kind, norm,
               -- The longest token is the rarest: the one the join keys on.
               (SELECT arg_max(t, length(t)) FROM unnest(string_split(norm, ' ')) AS u(t)) AS anchor,
               CASE WHEN short_name THEN owner END AS owner
        FROM bound
        WHERE length(norm) >= {MIN_LENGTH} AND (NOT short_name OR owner IS NOT NULL)""")
    return con.execute("SELECT count(*) FROM phi").fetchall()[0][0]


def scan_relation(con: duckdb.DuckDBPyConnection, relation: str, column: str,
                  person: str | None = None) -> dict[str, int]:
    """Rows of `relation` whose `column` contains a known identifier, by kind. `person`
    names the relation's person_key column, where short name parts are matched."""
    pk = f'CAST("{person}" AS VARCHAR)' if person else "NULL"
    got = con.execute(f"""
        WITH docs AS (
            SELECT row_number() OVER () AS rid, {pk} AS pk,
                   ' ' || {NORM.format(x=f'CAST("{column}" AS VARCHAR)')} || ' ' AS txt
            FROM {relation} WHERE "{column}" IS NOT NULL),
        tokens AS (SELECT DISTINCT rid, unnest(string_split(trim(txt), ' ')) AS token FROM docs)
        SELECT p.kind, count(DISTINCT d.rid)
        FROM tokens k JOIN phi p ON p.anchor = k.token
        JOIN docs d ON d.rid = k.rid
        WHERE contains(d.txt, ' ' || p.norm || ' ')
          AND (p.owner IS NULL OR p.owner = d.pk)
        GROUP BY 1 ORDER BY 1""").fetchall()
    return dict(got)


def _text_columns(schema: pa.Schema) -> list[str]:
    out = []
    for f in schema:
        t = f.type
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            t = t.value_type
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
            out.append(f.name)
    return out


def lake_targets() -> list[str]:
    """Every silver and gold table (gold.rag_audit included)."""
    return lake.list_tables("silver") + lake.list_tables("gold")


def scan(tables: list[str] | None = None, chunks: bool = True) -> tuple[list[Leak], dict]:
    """Scan `tables` (default: all silver and gold) and the embedded chunk text."""
    con = duckdb.connect()
    leaks: list[Leak] = []
    stats = {"identifier_values": 0, "columns_scanned": 0, "tables_scanned": 0}
    try:
        stats["identifier_values"] = load_identifiers(con)
        for table in tables if tables is not None else lake_targets():
            dt = lake.open_table(table)
            if dt is None:
                continue
            stats["tables_scanned"] += 1
            relation = f"(SELECT * FROM {lake.scan_sql(dt)})"
            schema = lake.arrow_schema(dt)
            person = "person_key" if "person_key" in schema.names else None
            for column in _text_columns(schema):
                stats["columns_scanned"] += 1
                for kind, n in scan_relation(con, relation, column, person).items():
                    leaks.append(Leak(table, column, kind, n))
        if chunks:
            from assets.retrieval.vectors import open_table

            tbl = open_table()
            if tbl is not None:
                text = tbl.search().select(["chunk_id", "person_key", "text"]).limit(None).to_arrow()
                con.register("clinical_chunks_text", text)
                stats["columns_scanned"] += 1
                for kind, n in scan_relation(con, "clinical_chunks_text", "text", "person_key").items():
                    leaks.append(Leak("vectors.clinical_chunks", "text", kind, n))
    finally:
        con.close()
    return leaks, stats
