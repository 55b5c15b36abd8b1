"""The corpus composition table and the model summary of the intro page."""

from __future__ import annotations

import pytest

from functok.book.site import world_markdown
from functok.world import composition
from functok.world.config import pretrain_config


def test_composition_counts_documents_and_tokens_per_source():
    rows = composition.composition_table(
        {
            "train": (["wiki/A", "sotu/x/000", "wiki/B", "gutenberg/b/0001"], [10, 30, 20, 40]),
            "heldout": (["sotu/y/001"], [7]),
        }
    )
    by = {(r["split"], r["source"]): r for r in rows}
    assert by["train", "wiki"]["documents"] == 2 and by["train", "wiki"]["tokens"] == 30
    assert by["train", "wiki"]["share"] == pytest.approx(0.3)
    assert by["train", "gutenberg"]["share"] == pytest.approx(0.4)
    assert by["heldout", "sotu"] == {"split": "heldout", "source": "sotu", "documents": 1, "tokens": 7, "share": 1.0}
    assert composition.largest_share(rows) == ("gutenberg", pytest.approx(0.4))


def test_model_summary_counts_parameters_of_the_built_models():
    from transformers import AutoTokenizer

    from functok.world.embedded import tokenizer_dir

    cfg = pretrain_config("smoke")
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir(cfg)))
    rows = composition.model_summary(cfg, tok, train_tokens_available=cfg.train_tokens // 2)
    assert [r["n_layers"] for r in rows] == list(cfg.depths)
    # a Llama without biases, untied: embeddings + unembedding + per layer (4 d^2 attention, 3 d x d_mlp
    # SwiGLU, two RMSNorm weights) + the final norm
    d, m, v = cfg.d_model, cfg.d_mlp, len(tok)
    for r in rows:
        assert r["parameters"] == 2 * v * d + r["n_layers"] * (4 * d * d + 3 * d * m + 2 * d) + d
        assert r["passes"] == pytest.approx(2.0)


def test_world_markdown_without_and_with_results(tmp_path):
    import json

    assert "once chapter 1 has run" in world_markdown(tmp_path)
    world = {
        "composition": [{"split": "train", "source": "wiki", "documents": 1234, "tokens": 56789, "share": 0.4}],
        "largest_source": {"source": "wiki", "share": 0.4},
        "models": [
            {
                "n_layers": 2,
                "parameters": 1450000,
                "d_model": 128,
                "n_heads": 4,
                "d_mlp": 352,
                "context_size": 256,
                "batch_size": 8,
                "steps": 2929,
                "train_tokens": 6000000,
                "passes": 1.6,
                "n_checkpoints": 14,
            }
        ],
        "tokenizer_vocab_size": 4096,
    }
    (tmp_path / "function_tokens.json").write_text(json.dumps({"results": {"world": world}}))
    md = world_markdown(tmp_path)
    assert "| train | wiki | 1,234 | 56,789 | 40.0% |" in md
    assert "| Llama, 2 layers | 1,450,000 |" in md and "wiki, is 40.0%" in md
