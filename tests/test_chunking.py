from assets.retrieval.chunking import chunk_text


def test_chunks_cover_text_with_overlap():
    words = [f"w{i}" for i in range(400)]
    chunks = chunk_text("doc", " ".join(words), max_words=160, overlap=32)
    assert [c.chunk_id for c in chunks] == ["doc-000", "doc-001", "doc-002"]
    assert all(len(c.text.split()) <= 160 for c in chunks)
    seen = set()
    for c in chunks:
        seen.update(c.text.split())
    assert seen == set(words)
    assert chunks[0].text.split()[-32:] == chunks[1].text.split()[:32]


def test_empty_text_has_no_chunks_and_hash_depends_on_model():
    assert chunk_text("d", None) == [] and chunk_text("d", "   ") == []
    c = chunk_text("d", "some words")[0]
    assert c.content_hash("m1") != c.content_hash("m2")
