"""Retrieval-augmented answers with citations, and their audit trail.

Every answer names the chunks it used; each chunk resolves to a source row
(`source_table` at `source_version`, key `source_key`), and each ask is appended to
`gold.rag_audit`. With no LLM endpoint configured the answer is the evidence itself,
and says that no model was used.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pyarrow as pa

from assets.retrieval.vectors import SOURCE_KEY, Hit, search
from medlake import lake, privacy
from medlake.config import Settings, get_settings

AUDIT = "gold.rag_audit"
PROMPT = Path(__file__).with_name("prompts") / "answer.txt"
CITATION = re.compile(r"\[([0-9a-f]{32}-\d{3})\]")

AUDIT_SCHEMA = pa.schema([
    ("answer_id", pa.string()), ("question", pa.string()), ("person_key", pa.string()),
    ("citations", pa.string()), ("model", pa.string()), ("answer", pa.string()),
    ("cited_ok", pa.bool_()), ("asked_at", pa.timestamp("us", tz="UTC")),
    ("asked_by", pa.string()),
])


@dataclass
class Citation:
    chunk_id: str
    source_table: str
    source_version: int
    source_key: str
    score: float


@dataclass
class Answer:
    answer_id: str
    question: str
    answer: str
    model: str | None
    citations: list[Citation] = field(default_factory=list)
    cited_ok: bool = True
    evidence: list[Hit] = field(default_factory=list)


def build_prompt(question: str, hits: list[Hit]) -> str:
    evidence = "\n\n".join(
        f"[{h.chunk_id}] ({h.doc_type or 'document'}, {h.doc_date or 'undated'})\n{h.text}"
        for h in hits)
    return PROMPT.read_text().format(evidence=evidence or "(none found)", question=question)


def call_llm(prompt: str, settings: Settings) -> str:
    from openai import OpenAI

    client = OpenAI(base_url=settings.llm_base_url, api_key=settings.llm_api_key,
                    timeout=settings.llm_timeout, max_retries=2)
    reply = client.chat.completions.create(
        model=settings.llm_model or "default",
        messages=[{"role": "user", "content": prompt}],
        temperature=0.0,
    )
    return reply.choices[0].message.content or ""


def extractive_answer(hits: list[Hit], reason: str = "MEDLAKE_LLM_BASE_URL is not set") -> str:
    if not hits:
        return (f"No language model was used ({reason}) and no evidence was found: run "
                "`medlake run` to build the embeddings first.")
    lines = [f"No language model was used ({reason}); the most relevant evidence is:"]
    for h in hits:
        snippet = h.text if len(h.text) <= 300 else h.text[:297] + "..."
        lines.append(f"- [{h.chunk_id}] {h.doc_type or 'document'}, {h.doc_date}: {snippet}")
    return "\n".join(lines)


def ask(question: str, k: int = 5, person_key: str | None = None,
        asked_by: str | None = None, settings: Settings | None = None) -> Answer:
    settings = settings or get_settings()
    # A question may carry identifiers (a phone number, an MRN): scrub it before it
    # reaches the prompt or the audit table.
    clean = privacy.scrub_text(question) or ""
    hits = search(clean, k=k, person_key=person_key)
    text, model, used, cited_ok = None, None, hits, True
    if settings.llm_base_url:
        from openai import OpenAIError

        try:
            text = call_llm(build_prompt(clean, hits), settings)
        except OpenAIError as e:
            # The clinician still gets the evidence; the operator gets the cause.
            text = (f"The language model at {settings.llm_base_url} could not answer "
                    f"({type(e).__name__}); check that the server is up and that "
                    "MEDLAKE_LLM_BASE_URL and MEDLAKE_LLM_MODEL are right.\n"
                    + extractive_answer(hits, reason="the model call failed"))
        else:
            model = settings.llm_model or "default"
            cited = set(CITATION.findall(text))
            used = [h for h in hits if h.chunk_id in cited]
            cited_ok = bool(cited) and cited <= {h.chunk_id for h in hits}
    if text is None:
        text = extractive_answer(hits)
    answer = Answer(
        answer_id=str(uuid.uuid4()), question=clean, answer=text, model=model,
        citations=[Citation(h.chunk_id, h.source_table, h.source_version, h.source_key,
                            round(h.score, 4)) for h in used],
        cited_ok=cited_ok, evidence=hits)
    record(answer, person_key, asked_by or settings.user)
    return answer


def record(answer: Answer, person_key: str | None, asked_by: str) -> None:
    row = dict(answer_id=answer.answer_id, question=answer.question, person_key=person_key,
               citations=orjson.dumps([asdict(c) for c in answer.citations]).decode(),
               model=answer.model, answer=answer.answer, cited_ok=answer.cited_ok,
               asked_at=datetime.now(timezone.utc), asked_by=asked_by)
    lake.merge(AUDIT, pa.Table.from_pylist([row], AUDIT_SCHEMA), ["answer_id"])


def resolve(citation: Citation) -> dict | None:
    """The source row a citation points to, read at the cited Delta version."""
    rows = lake.read(citation.source_table, f'SELECT * FROM t WHERE "{SOURCE_KEY}" = ?',
                     params=[citation.source_key], version=citation.source_version).to_pylist()
    return rows[0] if rows else None
