"""clinical_chunks sync and search on a real LanceDB in a temporary MEDLAKE_HOME."""
import shutil
from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from assets.retrieval import embedder, search as search_mod, vectors
from conftest import use_home

SOURCE = vectors.SOURCES[0]


def _doc(i: int, text: str, person: str = "p1", day: int = 1, doc_type: str = "Progress note"):
    return dict(document_id=f"{i:032x}", person_key=person, doc_type=doc_type,
                doc_date=date(2024, 1, day), text=text)


DOCS = [
    _doc(1, "History of present illness: chest pain radiating to the left arm.\n"
            "Assessment: acute coronary syndrome ruled out.", "p1", 3),
    _doc(2, "Recent labs: HbA1c 9.4 %.\nAssessment: poorly controlled type 2 diabetes, "
            "started the study drug ZX4471.", "p2", 10, "Discharge summary"),
    _doc(3, "FINDINGS:\nRight lower lobe consolidation.\nIMPRESSION:\nPneumonia.", "p1", 20,
         "Imaging report"),
]


class Counting:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self):
        self.texts = 0

    def __call__(self, texts):
        self.texts += len(texts)
        return embedder.embed(texts)


@pytest.fixture
def torch_home(home, monkeypatch):
    monkeypatch.setenv("MEDLAKE_EMBED_BACKEND", "torch")  # no ONNX export in these tests
    return home


def _rows():
    got = vectors.open_table().search().select(
        ["chunk_id", "text", "source_table", "source_version", "source_key"]).limit(None).to_arrow()
    return {r["chunk_id"]: r for r in got.to_pylist()}


def test_incremental_sync_embeds_only_what_changed(torch_home):
    count = Counting()
    first = vectors.sync([(SOURCE, 4, DOCS)], embed=count)
    assert first.embedded == first.chunks == count.texts == 3
    rows = _rows()
    assert {r["source_table"] for r in rows.values()} == {"silver.document"}
    assert {r["source_version"] for r in rows.values()} == {4}
    assert rows[f"{2:032x}-000"]["source_key"] == f"{2:032x}"

    again = vectors.sync([(SOURCE, 4, DOCS)], embed=count)
    assert count.texts == 3 and again.embedded == 0 and again.unchanged == 3
    assert again.version == first.version  # nothing written

    changed = [DOCS[0], {**DOCS[1], "text": DOCS[1]["text"] + " HbA1c rechecked at 8.1 %."}]
    third = vectors.sync([(SOURCE, 5, changed)], embed=count)
    assert count.texts == 4 and third.embedded == 1 and third.deleted == 1
    rows = _rows()
    assert f"{3:032x}-000" not in rows  # the deleted document's chunks are gone
    assert rows[f"{2:032x}-000"]["text"].endswith("8.1 %.")
    assert rows[f"{2:032x}-000"]["source_version"] == 5
    assert rows[f"{1:032x}-000"]["source_version"] == 4  # unchanged rows keep theirs

    # a source left out of a sync (its table missing) keeps its chunks
    other = vectors.Source("gold.imaging_report", "study_uid", "")
    vectors.sync([(other, 1, [_doc(9, "IMPRESSION:\nNo fracture.")])], embed=count)
    assert len(_rows()) == 3


def test_filters_and_hybrid_finds_exact_terms_vectors_miss(torch_home):
    vectors.sync([(SOURCE, 1, DOCS)])
    ids = lambda hits: [h.document_id for h in hits]  # noqa: E731
    assert set(ids(vectors.search("lung findings", k=10, person_key="p1", mode="vector"))) \
        == {DOCS[0]["document_id"], DOCS[2]["document_id"]}
    assert ids(vectors.search("anything", k=10, doc_type="Discharge summary", mode="vector")) \
        == [DOCS[1]["document_id"]]
    assert ids(vectors.search("anything", k=10, mode="vector", date_from="2024-01-05",
                              date_to=date(2024, 1, 15))) == [DOCS[1]["document_id"]]
    fts = vectors.search("ZX4471", k=10, mode="fts")
    assert ids(fts) == [DOCS[1]["document_id"]] and fts[0].source_table == "silver.document"

    # The query vector points at the chest-pain note; only the full-text side knows ZX4471.
    near_chest = embedder.embed([DOCS[0]["text"]])[0]
    vec = vectors.search("ZX4471", k=1, mode="vector", vector=near_chest)
    assert ids(vec) == [DOCS[0]["document_id"]]
    hybrid = vectors.search("ZX4471", k=2, mode="hybrid", vector=near_chest)
    assert DOCS[1]["document_id"] in ids(hybrid)
    with pytest.raises(ValueError, match="mode"):
        vectors.search("x", mode="nearest")


def test_ann_index_is_built_past_the_threshold_and_keeps_recall(home):
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(40, embedder.DIM))
    vecs = centers[rng.integers(0, 40, 3000)] + 0.6 * rng.normal(size=(3000, embedder.DIM))
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    rows = [dict(chunk_id=f"c{i:05d}", document_id=f"d{i}", person_key="p", doc_type="t",
                 doc_date=None, chunk_index=0, section="", text=f"text {i}", vector=v,
                 source_table="silver.document", source_version=1, source_key=f"d{i}",
                 content_hash="h", embed_model="m") for i, v in enumerate(vecs)]
    tbl = vectors.connect().create_table(vectors.TABLE, pa.Table.from_pylist(rows, vectors.SCHEMA))
    search_mod.ensure_indexes(tbl, threshold=5000)
    assert not search_mod._has_index(tbl, "vector")  # below the threshold: exact search
    search_mod.ensure_indexes(tbl, threshold=2000)
    assert search_mod._has_index(tbl, "vector")
    chosen = search_mod.ann_settings()
    assert chosen["recall_at_10"] >= 0.95
    # fresh queries, not those it was tuned on
    queries = vecs[rng.integers(0, 3000, 30)] + 0.02 * rng.normal(size=(30, embedder.DIM))
    recall = search_mod.recall_at_k(tbl, queries.astype(np.float32), 10,
                                    chosen["nprobes"], chosen["refine_factor"])
    assert recall >= 0.95
    hits = vectors.search("", k=10, mode="vector", vector=vecs[7])
    assert hits[0].chunk_id == "c00007"


def test_onnx_int8_export_loads_offline_and_matches_fp32(home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    texts = [d["text"] for d in DOCS]
    monkeypatch.setenv("MEDLAKE_EMBED_BACKEND", "torch")
    ref = embedder.embed(texts)
    monkeypatch.setenv("MEDLAKE_EMBED_BACKEND", "onnx-int8")
    got = embedder.embed(texts)
    assert list((home / "models").glob("*/model_int8.onnx"))
    assert embedder.model_name().endswith("+int8")  # a backend switch re-embeds
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    assert (got * ref).sum(axis=1).min() > 0.97
    # Another home gets its own encoder and files, not the one cached for the first
    # (the copied export stands in for a second, slow export).
    other = home.parent / "other"
    shutil.copytree(home / "models", other / "models")
    first = embedder.encoder()
    use_home(monkeypatch, other)
    assert embedder.encoder() is not first
    monkeypatch.setenv("MEDLAKE_EMBED_BACKEND", "fp8")
    with pytest.raises(ValueError, match="MEDLAKE_EMBED_BACKEND"):
        embedder.backend()


def test_evaluate_retrieval_counts_recall_and_reciprocal_rank(torch_home):
    from assets.retrieval.evaluation import evaluate_retrieval

    vectors.sync([(SOURCE, 1, DOCS)])
    questions = [{"question": "Which record mentions ZX4471?", "document_id": DOCS[1]["document_id"]},
                 {"question": "right lower lobe consolidation", "document_id": DOCS[2]["document_id"]},
                 {"question": "no such thing", "document_id": "missing"}]
    got = evaluate_retrieval(questions, k=2)
    assert got["recall@2"] == pytest.approx(2 / 3) and got["questions"] == 3
    assert 0 < got["mrr"] <= got["recall@2"]
