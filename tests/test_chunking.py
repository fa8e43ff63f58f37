from assets.retrieval import embedder
from assets.retrieval.chunking import chunk_text, sections

NOTE = """PROGRESS NOTE
Visit date: [DATE]
History of present illness: A 67-year-old man with type 2 diabetes who presents for follow-up.
Recent labs: HbA1c 9.4 %, creatinine 1.1 mg/dL.
ASSESSMENT: Poorly controlled diabetes.
FINDINGS:
The lungs are clear. No pleural effusion.
IMPRESSION:
No acute cardiopulmonary process."""


def _tok():
    return embedder.tokenizer(embedder.model_path())


def test_sections_split_on_note_and_report_headings():
    heads = [h for h, _ in sections(NOTE)]
    assert heads == ["", "Visit date", "History of present illness", "Recent labs",
                     "ASSESSMENT", "FINDINGS", "IMPRESSION"]
    # FINDINGS keeps the lines under it
    assert dict(sections(NOTE))["FINDINGS"].endswith("No pleural effusion.")


def test_small_sections_pack_and_a_heading_never_splits_from_its_text():
    tok, limit = _tok()
    assert limit == 256  # the packaged MiniLM reads 256 word pieces
    chunks = chunk_text("doc", NOTE, max_tokens=40, tokenizer=tok)
    assert len(chunks) > 1
    for c in chunks:
        assert len(tok(c.text, add_special_tokens=False)["input_ids"]) <= 40
    joined = "\n".join(c.text for c in chunks)
    assert "IMPRESSION:\nNo acute cardiopulmonary process." in joined
    assert any(c.section == "IMPRESSION" or "IMPRESSION:" in c.text for c in chunks)
    # whole note fits the model: one chunk, nothing lost
    whole = chunk_text("doc", NOTE)
    assert [c.chunk_id for c in whole] == ["doc-000"] and whole[0].text == NOTE.strip()


def test_long_section_is_cut_into_overlapping_token_bounded_windows():
    tok, _ = _tok()
    words = [f"hypertension{i}" for i in range(300)]  # several word pieces each
    text = "Hospital course: " + " ".join(words)
    chunks = chunk_text("d1", text, max_tokens=100, overlap=20, tokenizer=tok)
    assert [c.chunk_id for c in chunks][:2] == ["d1-000", "d1-001"]
    for c in chunks:
        assert len(tok(c.text, add_special_tokens=False)["input_ids"]) <= 100
    seen = set()
    for c in chunks:
        seen.update(c.text.split())
    assert set(words) <= seen  # every word lands in some chunk
    for a, b in zip(chunks, chunks[1:]):  # consecutive windows share words
        assert set(a.text.split()) & set(b.text.split())
    # stable ids: the same text gives the same chunks
    assert chunk_text("d1", text, max_tokens=100, overlap=20, tokenizer=tok) == chunks


def test_empty_text_has_no_chunks_and_hash_depends_on_model():
    assert chunk_text("d", None) == [] and chunk_text("d", "   ") == []
    c = chunk_text("d", "some words")[0]
    assert c.content_hash("m1") != c.content_hash("m2")
