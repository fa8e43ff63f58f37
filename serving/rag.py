"""Retrieval-augmented answers with citations, and their audit trail.

Every answer names the chunks it used; each chunk resolves to a source row
(`source_table` at `source_version`, key `source_key`), and each ask is appended to
`gold.rag_audit` with everything it retrieved and who asked. With no LLM endpoint
configured the answer is the evidence itself, and says that no model was used. The
HTTP service (`serving.app`), the CLI and batch generation (`gold.patient_summary`)
all answer through `ask`.
"""
from __future__ import annotations

import functools
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import orjson
import pyarrow as pa

from assets.retrieval.search import Hit, search
from assets.retrieval.vectors import SOURCES
from medlake import lake, privacy
from medlake.config import Settings, get_settings
from serving.audit import AppendLog

AUDIT = "gold.rag_audit"
PROMPTS = Path(__file__).with_name("prompts")
# A chunk id is its source row's key (a 32-hex pseudonym, or an imaging study's derived
# UID) and its number.
CITATION = re.compile(r"\[((?:[0-9a-f]{32}|2\.25\.\d+)-\d{3})\]")

AUDIT_SCHEMA = pa.schema([
    ("answer_id", pa.string()), ("question", pa.string()), ("person_key", pa.string()),
    ("citations", pa.string()), ("model", pa.string()), ("answer", pa.string()),
    ("cited_ok", pa.bool_()), ("asked_at", pa.timestamp("us", tz="UTC")),
    ("asked_by", pa.string()),
    # Everything retrieved (not only what was cited), as JSON [{chunk_id, source_table,
    # source_version, source_key, score}], so an answer can be replayed against the
    # exact Delta versions it saw.
    ("retrieved", pa.string()), ("flags", pa.string()), ("filters", pa.string()),
    ("prompt", pa.string()),
])
_audit_log = AppendLog(AUDIT, AUDIT_SCHEMA)


@dataclass
class Citation:
    chunk_id: str
    source_table: str
    source_version: int
    source_key: str
    score: float

    @classmethod
    def of(cls, h: Hit) -> "Citation":
        return cls(h.chunk_id, h.source_table, h.source_version, h.source_key, round(h.score, 4))


@dataclass
class Flags:
    """What a reader of the answer must know about how far to trust its citations."""
    model_used: bool = False
    cited_ok: bool = True          # every citation names a retrieved chunk, and there is one
    uncited: bool = False          # the model answered without citing anything
    unknown_citations: list[str] = field(default_factory=list)  # cited but never retrieved
    fallback_reason: str | None = None  # why the answer is evidence only


@dataclass
class Answer:
    answer_id: str
    question: str
    answer: str
    model: str | None
    citations: list[Citation] = field(default_factory=list)
    flags: Flags = field(default_factory=Flags)
    evidence: list[Hit] = field(default_factory=list)

    @property
    def cited_ok(self) -> bool:
        return self.flags.cited_ok


def build_prompt(question: str, hits: list[Hit], template: str = "answer") -> str:
    evidence = "\n\n".join(
        f"[{h.chunk_id}] ({h.doc_type or 'document'}, {h.doc_date or 'undated'})\n{h.text}"
        for h in hits)
    return prompt_template(template).format(evidence=evidence or "(none found)", question=question)


@functools.cache
def prompt_template(name: str) -> str:
    return (PROMPTS / f"{name}.txt").read_text()


@functools.cache
def _client(base_url: str, api_key: str, timeout: float, retries: int):
    from openai import OpenAI

    # The client retries connection errors, 408/409/429 and 5xx `retries` times with
    # exponential backoff (0.5 s doubling, capped at 8 s), each try bounded by `timeout`.
    return OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=retries)


def call_llm(prompt: str, settings: Settings) -> str:
    client = _client(settings.llm_base_url, settings.llm_api_key, settings.llm_timeout,
                     settings.llm_retries)
    reply = client.chat.completions.create(
        model=settings.llm_model or "default",
        messages=[{"role": "user", "content": prompt}],
        temperature=0.0,
    )
    return reply.choices[0].message.content or ""


def check_citations(text: str, hits: list[Hit]) -> tuple[list[Hit], Flags]:
    """The retrieved chunks an answer cites, and flags for citations that are missing
    or name chunks that were never retrieved."""
    cited = list(dict.fromkeys(CITATION.findall(text)))
    retrieved = {h.chunk_id for h in hits}
    unknown = [c for c in cited if c not in retrieved]
    flags = Flags(model_used=True, uncited=not cited, unknown_citations=unknown,
                  cited_ok=bool(cited) and not unknown)
    return [h for h in hits if h.chunk_id in cited], flags


def extractive_answer(hits: list[Hit], reason: str = "MEDLAKE_LLM_BASE_URL is not set") -> str:
    if not hits:
        return (f"No language model was used ({reason}) and no evidence was found: run "
                "`medlake run` to build the embeddings first.")
    lines = [f"No language model was used ({reason}); the most relevant evidence is:"]
    for h in hits:
        snippet = h.text if len(h.text) <= 300 else h.text[:297] + "..."
        lines.append(f"- [{h.chunk_id}] {h.doc_type or 'document'}, {h.doc_date}: {snippet}")
    return "\n".join(lines)


def retrieve(question: str, k: int = 5, person_key: str | None = None,
             doc_type: str | None = None, date_from: date | None = None,
             date_to: date | None = None) -> list[Hit]:
    """Hybrid (vector + full-text) search of the retrieval layer, within the filters."""
    return search(question, k=k, person_key=person_key, doc_type=doc_type,
                  date_from=date_from, date_to=date_to)


def ask(question: str, k: int = 5, person_key: str | None = None,
        asked_by: str | None = None, settings: Settings | None = None, *,
        doc_type: str | None = None, date_from: date | None = None,
        date_to: date | None = None, prompt: str = "answer") -> Answer:
    settings = settings or get_settings()
    # A question may carry identifiers (a phone number, an MRN): scrub it before it
    # reaches the prompt or the audit table.
    clean = privacy.scrub_text(question) or ""
    filters = {"person_key": person_key, "doc_type": doc_type, "date_from": date_from,
               "date_to": date_to}
    hits = retrieve(clean, k=k, **filters)
    text, model, used = None, None, hits
    flags = Flags(fallback_reason="MEDLAKE_LLM_BASE_URL is not set")
    if settings.llm_base_url:
        from openai import OpenAIError

        try:
            text = call_llm(build_prompt(clean, hits, prompt), settings)
        except OpenAIError as e:
            # The clinician still gets the evidence; the operator gets the cause.
            flags.fallback_reason = f"the model call failed ({type(e).__name__})"
            text = (f"The language model at {settings.llm_base_url} could not answer "
                    f"({type(e).__name__}); check that the server is up and that "
                    "MEDLAKE_LLM_BASE_URL and MEDLAKE_LLM_MODEL are right.\n"
                    + extractive_answer(hits, reason="the model call failed"))
        else:
            model = settings.llm_model or "default"
            used, flags = check_citations(text, hits)
    if text is None:
        text = extractive_answer(hits)
    answer = Answer(answer_id=str(uuid.uuid4()), question=clean, answer=text, model=model,
                    citations=[Citation.of(h) for h in used], flags=flags, evidence=hits)
    record(answer, filters, asked_by or settings.user, prompt)
    return answer


def to_json(value) -> str:
    return orjson.dumps(value, default=str).decode()


def record(answer: Answer, filters: dict, asked_by: str, prompt: str = "answer") -> None:
    """Append the ask to gold.rag_audit; returns once the Delta commit is durable."""
    _audit_log.append(dict(
        answer_id=answer.answer_id, question=answer.question,
        person_key=filters.get("person_key"),
        citations=to_json([asdict(c) for c in answer.citations]),
        model=answer.model, answer=answer.answer, cited_ok=answer.flags.cited_ok,
        asked_at=datetime.now(timezone.utc), asked_by=asked_by,
        retrieved=to_json([asdict(Citation.of(h)) for h in answer.evidence]),
        flags=to_json(asdict(answer.flags)),
        filters=to_json({n: v for n, v in filters.items() if v is not None}),
        prompt=prompt))


def audited(answer_id: str) -> dict | None:
    """The audit row of one answer, or None."""
    rows = lake.read(AUDIT, "SELECT * FROM t WHERE answer_id = ?", params=[answer_id]).to_pylist()
    return rows[0] if rows else None


KEYS = {s.table: s.key for s in SOURCES}  # source table -> its row key column


def resolve(citation: Citation) -> dict | None:
    """The source row a citation points to, read at the cited Delta version."""
    key = KEYS.get(citation.source_table)
    if key is None:
        return None
    rows = lake.read(citation.source_table, f'SELECT * FROM t WHERE "{key}" = ?',
                     params=[citation.source_key], version=citation.source_version).to_pylist()
    return rows[0] if rows else None
