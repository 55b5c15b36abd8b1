"""functok.sae.models: hook names, Pythia's hub revisions (validated offline)."""

from __future__ import annotations

import pytest

from functok.core.config import ParamError
from functok.sae import models


def test_hook_names_and_layers():
    assert models.hook_name(3) == "blocks.3.hook_resid_post"
    assert models.hook_layer(models.hook_name(12)) == 12
    assert models.hook_layer("hook_embed", strict=False) is None
    with pytest.raises(ParamError, match="^hook_name: got 'hook_embed'"):
        models.hook_layer("hook_embed")


def test_pythia_revisions():
    from transformer_lens.loading_from_pretrained import PYTHIA_CHECKPOINTS

    assert models.PYTHIA_STEPS == list(PYTHIA_CHECKPOINTS)
    revs = models.hub_revisions("EleutherAI/pythia-160m-deduped", [0, 153], [1000])
    assert [r["revision"] for r in revs] == ["step0", "step1000", "step143000"]
    assert revs[1]["tokens_seen"] == 1000 * 1024 * 2048
    assert models.hub_revisions("EleutherAI/pythia-160m", [], [])[0]["revision"] == "main"
    for args, fragment in [(([154], []), "checkpoint_index"), (([], [1500]), "no checkpoint at step 1500")]:
        with pytest.raises(ParamError, match=fragment):
            models.hub_revisions("EleutherAI/pythia-160m", *args)
    with pytest.raises(ParamError, match="^checkpoint_steps: hub model 'gpt2-medium'"):
        models.hub_revisions("gpt2-medium", [], [1000])


def test_hub_names_are_refused_offline(monkeypatch):
    monkeypatch.delenv("FUNCTOK_ONLINE", raising=False)
    with pytest.raises(ParamError, match="^checkpoint: 'EleutherAI/pythia-14m' is no local folder"):
        models.load_model("EleutherAI/pythia-14m")


def test_logit_rows_caps_the_logits_one_forward_holds():
    """Gemma-3's 262,144-token vocabulary: 8 windows of 256 tokens would be 2 GiB of fp32 logits; the cap
    (1 GiB) gives 4; a 4,096-token vocabulary keeps the batch; a stand-in model without a config keeps it."""
    from types import SimpleNamespace

    from functok.sae.models import LOGITS_BYTES, logit_rows

    gemma = SimpleNamespace(cfg=SimpleNamespace(d_vocab=262_144))
    assert logit_rows(gemma, 8, 256) == LOGITS_BYTES // (256 * 262_144 * 4) == 4
    assert logit_rows(gemma, 8, 4096) == 1  # never below one window
    assert logit_rows(SimpleNamespace(cfg=SimpleNamespace(d_vocab=4096)), 8, 256) == 8
    assert logit_rows(lambda x: x, 5, 256) == 5
