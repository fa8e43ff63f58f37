"""Split de-identified documents into overlapping, word-bounded chunks.

MiniLM reads at most 256 word pieces; 160 words stay under that for clinical prose, and
a 32-word overlap keeps a sentence cut at a boundary answerable from either side.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

MAX_WORDS = 160
OVERLAP_WORDS = 32


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    chunk_index: int
    text: str

    def content_hash(self, model: str) -> str:
        return hashlib.sha256(f"{model}\x1f{self.text}".encode()).hexdigest()


def chunk_text(document_id: str, text: str | None, max_words: int = MAX_WORDS,
               overlap: int = OVERLAP_WORDS) -> list[Chunk]:
    words = re.findall(r"\S+", text or "")
    if not words:
        return []
    step = max(1, max_words - overlap)
    chunks = []
    for i, start in enumerate(range(0, len(words), step)):
        chunks.append(Chunk(f"{document_id}-{i:03d}", i, " ".join(words[start:start + max_words])))
        if start + max_words >= len(words):
            break
    return chunks
