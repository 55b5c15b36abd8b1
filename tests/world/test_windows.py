"""functok.world.windows: BOS before every document, concatenated, cut, tail dropped, capped."""

from __future__ import annotations

import numpy as np
import pytest

from functok.core.config import ParamError
from functok.world import windows
from functok.world.tokenizers import gpt2_tokenizer

TEXTS = ["The cat sat on the mat.", "A second, longer document about dogs and cats and birds.", "Third one."]


def brute(tok, texts, ctx):
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    flat = [t for x in texts for t in [bos, *tok.encode(x, add_special_tokens=False)]]
    n = len(flat) // ctx
    return np.array(flat[: n * ctx]).reshape(n, ctx), len(flat)


def test_cut_matches_brute_force_and_caps():
    tok = gpt2_tokenizer()
    for ctx in (3, 5, 8):
        want, n_tokens = brute(tok, TEXTS, ctx)
        got, stats = windows.cut(tok, TEXTS, ctx)
        assert np.array_equal(got, want) and got.dtype == np.int32
        assert stats == {
            "n_windows": len(want),
            "n_tokens": n_tokens,
            "n_documents": 3,
            "dropped_tail_tokens": n_tokens - len(want) * ctx,
        }
        capped, _ = windows.cut(tok, TEXTS, ctx, max_windows=2)
        assert np.array_equal(capped, want[:2])
    assert (got[:, 0] == tok.eos_token_id).any()  # GPT-2: <|endoftext|> is both BOS and EOS


def test_too_long_a_context_is_refused():
    with pytest.raises(ParamError, match="^context_size: 1000 tokens is more than the"):
        windows.cut(gpt2_tokenizer(), TEXTS, 1000)


def test_save_round_trips(tmp_path):
    from functok.world.windows import load_windows

    win, stats = windows.cut(gpt2_tokenizer(), TEXTS, 4)
    folder = windows.save(tmp_path, win, stats)
    assert np.array_equal(load_windows(folder).numpy(), win)
    assert (tmp_path / "windows.json").exists()


def test_the_embedded_windows_keep_their_key():
    """The one key recipe gives the embedded windows the key they were cached under before the recipe
    was shared: what shapes them (corpus, BPE, split, context) and nothing else."""
    from functok.world.config import pretrain_config
    from functok.world.corpus import corpus_key

    cfg = pretrain_config("smoke")
    key = windows.windows_params("smoke", "heldout")
    assert key == {
        "corpus": corpus_key(cfg.corpus),  # the embedded corpus enters as its recipe
        "max_documents": cfg.max_documents,
        "heldout_fraction": cfg.heldout_fraction,
        "vocab_size": cfg.vocab_size,
        "split": "heldout",
        "context_size": cfg.context_size,
        "bos": True,
    }
    assert windows.windows_params("smoke", "heldout", max_windows=3) != key  # caps are part of the key


def test_token_windows_of_a_local_corpus_and_tokenizer(tmp_cache, text_folder, tmp_path):
    """Any tokenizer folder and corpus go through the same builder: the windows equal a brute-force cut
    of every document, the caps hold, and the key follows the tokenizer's content, not its path."""
    from functok.world.corpus import load_corpus

    tok_dir = tmp_path / "tok"
    gpt2_tokenizer().save_pretrained(str(tok_dir))
    texts = load_corpus(str(text_folder))["text"]
    got = windows.load_windows(windows.token_windows("smoke", "all", str(tok_dir), str(text_folder), context_size=6))
    want, _ = brute(gpt2_tokenizer(), texts, 6)
    assert np.array_equal(got.numpy(), want)
    capped = windows.token_windows("smoke", "all", str(tok_dir), str(text_folder), context_size=6, max_windows=2)
    assert np.array_equal(windows.load_windows(capped).numpy(), want[:2])
    first = windows.token_windows("smoke", "all", str(tok_dir), str(text_folder), context_size=6, n_documents=1)
    assert np.array_equal(windows.load_windows(first).numpy(), brute(gpt2_tokenizer(), texts[:1], 6)[0])

    key = windows.windows_params("smoke", "all", str(tok_dir), str(text_folder), context_size=6)
    (tok_dir / "tokenizer_config.json").write_text((tok_dir / "tokenizer_config.json").read_text().replace("}", " }"))
    assert windows.windows_params("smoke", "all", str(tok_dir), str(text_folder), context_size=6) != key


def test_unknown_split_is_refused():
    with pytest.raises(ParamError, match="^split: got 'test'"):
        windows.split_documents_of("embedded", "smoke", 0, "test")


def test_bos_start_windows_begin_with_bos_and_continue_the_stream():
    tok = gpt2_tokenizer()
    bos = tok.eos_token_id  # GPT-2 has no separate BOS
    flat, _ = brute(tok, TEXTS, 1)
    for ctx in (3, 6):
        got, stats = windows.cut(tok, TEXTS, ctx, bos_start=True)
        assert (got[:, 0] == bos).all()
        body = got[:, 1:].reshape(-1)
        assert np.array_equal(body, flat.reshape(-1)[: body.size])  # no token skipped or repeated
        assert stats["n_windows"] == len(flat) // (ctx - 1)
    with pytest.raises(ParamError, match="^context_size: got 1; expected at least 2"):
        windows.cut(tok, TEXTS, 1, bos_start=True)


def test_bos_start_is_read_from_a_wheel_models_folder(tmp_path):
    assert not windows.bos_start("embedded") and not windows.bos_start(str(tmp_path))
    (tmp_path / "functok_model.json").write_text('{"bos_start": true}')
    assert windows.bos_start(str(tmp_path))


def test_training_halves_split_the_training_documents(tmp_cache, text_folder):
    preset_docs = {
        split: list(windows.split_documents_of(str(text_folder), "smoke", 0, split)["text"])
        for split in ("train", "train_a", "train_b")
    }
    a, b = preset_docs["train_a"], preset_docs["train_b"]
    assert a and b and not set(a) & set(b)
    assert a + b == preset_docs["train"]


def test_document_index_follows_the_documents_through_the_cut():
    """Each prediction's document, from the windows alone, equals the label of its current token in a stream
    labelled while it was built (the leading BOS of a bos_start row takes the label of the token after it)."""
    tok = gpt2_tokenizer()
    bos = tok.eos_token_id
    texts = TEXTS * 3
    labels = np.array([d for d, x in enumerate(texts) for _ in [bos, *tok.encode(x, add_special_tokens=False)]])
    for ctx, bos_start in ((3, False), (8, False), (5, True), (9, True)):
        got, _ = windows.cut(tok, texts, ctx, bos_start=bos_start)
        body = ctx - 1 if bos_start else ctx
        lab = labels[: got.shape[0] * body].reshape(-1, body)
        if bos_start:
            lab = np.concatenate([lab[:, :1], lab], axis=1)
        want = lab[:, :-1] - lab[0, 0]
        doc = windows.document_index(got, bos, bos_start)
        assert doc.shape == (got.shape[0], ctx - 1) and np.array_equal(doc, want), (ctx, bos_start)
        # windows cut documents: some window holds predictions of two documents, and a document spans windows
        assert (doc.min(1) != doc.max(1)).any()
    # a bos_start row's leading BOS is not a document start: without the flag each row would begin one
    got, _ = windows.cut(tok, texts, 9, bos_start=True)
    assert windows.document_index(got, bos, False).max() > windows.document_index(got, bos, True).max()


def test_windows_bos_start_is_read_from_the_cache_key(tmp_path):
    (tmp_path / "windows").mkdir()
    assert not windows.windows_bos_start(tmp_path / "windows")
    (tmp_path / "params.json").write_text('{"bos_start": true}')
    assert windows.windows_bos_start(tmp_path / "windows")
