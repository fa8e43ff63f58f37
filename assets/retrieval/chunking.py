"""Split de-identified notes and reports into section-aware, token-bounded chunks.

A clinical note is a run of sections ("History of present illness:", "Assessment and
plan:", a report's "FINDINGS:" and "IMPRESSION:"). A chunk holds whole sections where
they fit, small neighbours packed together, so an answer keeps its heading; a section
longer than the model reads is cut into windows that overlap, so a sentence cut at a
boundary is answerable from either side. Lengths are counted in the embedding model's
own word pieces (MiniLM reads 256, two of them its start and end markers): a chunk is
never silently truncated by the model.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

OVERLAP_TOKENS = 48
# A heading opens a line and ends in a colon: "FINDINGS:", "Recent labs:",
# "History of present illness:". Up to six words, so ordinary sentences with a colon
# further in do not start a section.
HEADING = re.compile(r"^\s*([A-Z][A-Za-z&/()'-]*(?: [A-Za-z&/()'-]+){0,5}):(?:\s|$)")


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    chunk_index: int
    text: str
    section: str = ""

    def content_hash(self, model: str) -> str:
        return hashlib.sha256(f"{model}\x1f{self.text}".encode()).hexdigest()


def sections(text: str) -> list[tuple[str, str]]:
    """(heading, text) pairs in order; text before the first heading has heading ''."""
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        m = HEADING.match(line)
        if m or not out:
            out.append((m.group(1) if m else "", []))
        out[-1][1].append(line)
    return [(h, "\n".join(lines).strip()) for h, lines in out if "\n".join(lines).strip()]


def _windows(text: str, tok, budget: int, overlap: int) -> list[tuple[str, int]]:
    """Overlapping pieces of `text` of at most `budget` word pieces, cut between words."""
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets, words = enc["offset_mapping"], enc.word_ids()
    n = len(offsets)
    if n <= budget:
        return [(text, n)]
    starts = [i for i in range(n) if i == 0 or words[i] != words[i - 1]]

    def word_start_at_or_before(i: int, floor: int) -> int:
        best = floor
        for s in starts:
            if s > i:
                break
            if s > floor:
                best = s
        return best

    out, start = [], 0
    while True:
        end = start + budget
        if end >= n:
            out.append((text[offsets[start][0]:offsets[n - 1][1]], n - start))
            return out
        cut = word_start_at_or_before(end, start)
        if cut == start:  # one word longer than the budget: cut inside it
            cut = end
        out.append((text[offsets[start][0]:offsets[cut - 1][1]], cut - start))
        start = max(word_start_at_or_before(cut - overlap, start), start + 1)


def chunk_text(document_id: str, text: str | None, max_tokens: int | None = None,
               overlap: int = OVERLAP_TOKENS, tokenizer=None) -> list[Chunk]:
    """Chunks `<document_id>-000`, `-001`, … of at most `max_tokens` word pieces
    (default: what the embedding model reads, less its two special tokens)."""
    if not text or not text.strip():
        return []
    if tokenizer is None or max_tokens is None:
        from assets.retrieval import embedder

        tok, limit = embedder.tokenizer(embedder.model_path())
        tokenizer = tokenizer or tok
        max_tokens = max_tokens or limit - 2
    overlap = min(overlap, max_tokens // 2)

    pieces: list[tuple[str, str, int]] = []  # (heading, text, word pieces)
    for heading, body in sections(text):
        pieces += [(heading, t, n) for t, n in _windows(body, tokenizer, max_tokens, overlap)]

    packed: list[tuple[str, list[str], int]] = []
    for heading, body, n in pieces:
        if packed and packed[-1][2] + n <= max_tokens:
            packed[-1][1].append(body)
            packed[-1] = (packed[-1][0] or heading, packed[-1][1], packed[-1][2] + n)
        else:
            packed.append((heading, [body], n))
    return [Chunk(f"{document_id}-{i:03d}", i, "\n".join(bodies), heading)
            for i, (heading, bodies, _) in enumerate(packed)]
