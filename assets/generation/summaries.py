"""`gold.patient_summary`: one cited summary per person, generated through the same
`serving.rag.ask` path as `/v1/ask` (same retrieval, citation checks and audit).

A person's summary is regenerated only when its inputs change: the content hashes of
the person's chunks in LanceDB, the model, or the prompt template. Everything else is
left alone, so a nightly run over an unchanged lake makes no LLM calls at all.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import orjson
import pyarrow as pa

from assets.retrieval.vectors import open_table
from medlake import lake
from medlake.config import Settings, get_settings
from serving import rag

SUMMARY = "gold.patient_summary"
PROMPT = "summary"
QUESTION = ("Summarize this patient's records: active problems, latest key results, "
            "imaging findings and current treatment.")
K = 8
ASKED_BY = "dagster:gold.patient_summary"

SCHEMA = pa.schema([
    ("person_key", pa.string()), ("summary", pa.string()), ("model", pa.string()),
    ("citations", pa.string()), ("cited_ok", pa.bool_()), ("flags", pa.string()),
    ("answer_id", pa.string()), ("chunks", pa.int32()), ("input_hash", pa.string()),
    ("generated_at", pa.timestamp("us", tz="UTC")),
])


@dataclass
class SummaryResult:
    persons: int = 0
    generated: int = 0
    unchanged: int = 0
    removed: int = 0
    flagged: int = 0
    version: int | None = None


def person_chunks() -> dict[str, list[tuple[str, str]]]:
    """person_key -> sorted (chunk_id, content_hash) of that person's chunks."""
    tbl = open_table()
    if tbl is None:
        return {}
    got = tbl.search().select(["person_key", "chunk_id", "content_hash"]).limit(None).to_arrow()
    out: dict[str, list[tuple[str, str]]] = {}
    for pk, cid, h in zip(*(got.column(c).to_pylist() for c in ("person_key", "chunk_id", "content_hash"))):
        if pk:
            out.setdefault(pk, []).append((cid, h))
    return {pk: sorted(v) for pk, v in out.items()}


def input_hash(chunks: list[tuple[str, str]], model: str | None) -> str:
    """What a summary depends on: the person's chunks, the model and the prompt."""
    h = hashlib.sha256()
    h.update(orjson.dumps([chunks, model, rag.prompt_template(PROMPT), QUESTION, K]))
    return h.hexdigest()


def _model(settings: Settings) -> str | None:
    return (settings.llm_model or "default") if settings.llm_base_url else None


def existing() -> dict[str, str]:
    rows = lake.read(SUMMARY, "SELECT person_key, input_hash FROM t").to_pylist()
    return {r["person_key"]: r["input_hash"] for r in rows}


def summarize(person_key: str, chunks: list[tuple[str, str]], settings: Settings) -> dict:
    a = rag.ask(QUESTION, k=K, person_key=person_key, asked_by=ASKED_BY, settings=settings,
                prompt=PROMPT)
    # Hash what was actually used: a summary that fell back to evidence because the
    # model was down records no model, so the next run retries it.
    return dict(person_key=person_key, summary=a.answer, model=a.model,
                citations=rag.to_json([asdict(c) for c in a.citations]),
                cited_ok=a.flags.cited_ok, flags=rag.to_json(asdict(a.flags)),
                answer_id=a.answer_id, chunks=len(chunks),
                input_hash=input_hash(chunks, a.model),
                generated_at=datetime.now(timezone.utc))


def refresh(settings: Settings | None = None,
            progress: Callable[[str], None] | None = None) -> SummaryResult:
    """Regenerate the summaries whose inputs changed, drop those of persons without
    chunks, with at most MEDLAKE_LLM_CONCURRENCY model calls in flight."""
    settings = settings or get_settings()
    current = person_chunks()
    have = existing()
    model = _model(settings)
    todo = sorted(pk for pk, ch in current.items() if have.get(pk) != input_hash(ch, model))
    removed = sorted(set(have) - set(current))
    result = SummaryResult(persons=len(current), unchanged=len(current) - len(todo),
                           removed=len(removed))
    rows = []
    if todo:
        if progress:
            progress(f"summarizing {len(todo)} of {len(current)} persons "
                     f"({settings.llm_concurrency} at a time, model: {model or 'none'})")
        with ThreadPoolExecutor(max_workers=max(1, settings.llm_concurrency)) as pool:
            rows = list(pool.map(lambda pk: summarize(pk, current[pk], settings), todo))
        lake.merge(SUMMARY, pa.Table.from_pylist(rows, SCHEMA), ["person_key"],
                   update_when="s.input_hash <> t.input_hash")
    if removed:
        ids = ", ".join("'" + pk.replace("'", "''") + "'" for pk in removed)
        lake.open_table(SUMMARY).delete(f"person_key IN ({ids})")
    lake.ensure(SUMMARY, SCHEMA)
    result.generated = len(rows)
    result.flagged = sum(not r["cited_ok"] for r in rows)
    result.version = lake.version(SUMMARY)
    return result
