"""functok.windows: BOS before every document, concatenated, cut, tail dropped, capped."""

from __future__ import annotations

import numpy as np
import pytest

from functok import windows
from functok.config import ParamError
from functok.tokenizers import gpt2_tokenizer

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
        assert stats == {"n_windows": len(want), "n_tokens": n_tokens, "n_documents": 3,
                         "dropped_tail_tokens": n_tokens - len(want) * ctx}
        capped, _ = windows.cut(tok, TEXTS, ctx, max_windows=2)
        assert np.array_equal(capped, want[:2])
    assert (got[:, 0] == tok.eos_token_id).any()  # GPT-2: <|endoftext|> is both BOS and EOS


def test_too_long_a_context_is_refused():
    with pytest.raises(ParamError, match="^context_size: 1000 tokens is more than the"):
        windows.cut(gpt2_tokenizer(), TEXTS, 1000)


def test_save_round_trips(tmp_path):
    from functok.pretrain import load_windows

    win, stats = windows.cut(gpt2_tokenizer(), TEXTS, 4)
    folder = windows.save(tmp_path, win, stats)
    assert np.array_equal(load_windows(folder).numpy(), win)
    assert (tmp_path / "windows.json").exists()
