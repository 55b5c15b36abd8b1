"""Helpers of benchmarks/embedded_models.py (imported from there, not a script): held-out loss of a
checkpoint (all tokens and the four groups), a unigram baseline, and greedy next-token predictions
(the paper's Fig 10). The chapters compute these through TransformerLens (functok.chapters.loss_split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FIG10_PROMPT = "When young children are learning to read, they often struggle with complicated words"


def _load_hf(checkpoint: str | Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from functok.world.runtime import quiet_hf

    with quiet_hf():
        model = AutoModelForCausalLM.from_pretrained(str(checkpoint))
    model.eval()
    return model, AutoTokenizer.from_pretrained(str(checkpoint))


def heldout_losses(
    checkpoint: str | Path, windows: str | Path, function_ids=None, batch_size: int = 8, max_windows: int | None = None
) -> dict:
    """Mean per-token cross-entropy (nats) of a checkpoint on token windows: {"loss", "n_predictions"}
    plus, when function_ids is given, one entry per group of functok.world.loss_groups.GROUPS (predictions
    where the current or next token is special, e.g. BOS, are left out of the groups, kept in "loss")."""
    import torch
    import torch.nn.functional as F

    from functok.world.function_tokens import function_mask
    from functok.world.loss_groups import GROUPS, grouped_sums, prediction_groups
    from functok.world.windows import load_windows

    model, tok = _load_hf(checkpoint)
    x_all = load_windows(windows)
    if max_windows:
        x_all = x_all[:max_windows]
    V = model.config.vocab_size
    total, n = 0.0, 0
    sums = torch.zeros(5, dtype=torch.float64)
    counts = torch.zeros(5, dtype=torch.float64)
    if function_ids is not None:
        is_fn = function_mask(V, function_ids)
        is_sp = function_mask(V, sorted(set(tok.all_special_ids)))
    with torch.no_grad():
        for i in range(0, len(x_all), batch_size):
            x = x_all[i : i + batch_size]
            logits = model(input_ids=x).logits[:, :-1]
            per = F.cross_entropy(logits.reshape(-1, V), x[:, 1:].reshape(-1), reduction="none").view(x.shape[0], -1)
            total += float(per.double().sum())
            n += per.numel()
            if function_ids is not None:
                s, c = grouped_sums(per, prediction_groups(x, is_fn, is_sp), n_groups=5)
                sums += s
                counts += c
    out = {"loss": total / n, "n_predictions": n}
    if function_ids is not None:
        for k, g in enumerate(GROUPS):
            out[g] = float(sums[k] / counts[k]) if counts[k] > 0 else float("nan")
            out[f"n {g}"] = int(counts[k])
    return out


def unigram_loss(preset: str = "embedded") -> float:
    """Held-out cross-entropy (nats/token) of a unigram model fitted on the training windows' tokens
    (add-one smoothing), on the same predictions the models are scored on (every window position
    after the first)."""
    from functok.world.windows import load_windows, token_windows

    train = load_windows(token_windows(preset, "train")).numpy()
    held = load_windows(token_windows(preset, "heldout")).numpy()
    vocab = int(max(train.max(), held.max())) + 1
    from transformers import AutoTokenizer

    from functok.world.embedded import tokenizer_dir

    vocab = max(vocab, len(AutoTokenizer.from_pretrained(str(tokenizer_dir(preset)))))
    counts = np.bincount(train.reshape(-1), minlength=vocab).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[held[:, 1:].reshape(-1)].mean())


def greedy_predictions(checkpoint: str | Path, text: str = FIG10_PROMPT) -> list[dict]:
    """The argmax next token at every position of `text` (BOS prepended):
    [{"position", "token", "prediction", "next"}] where `next` is the text's actual next token."""
    import torch

    model, tok = _load_hf(checkpoint)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    x = torch.tensor([[tok.bos_token_id, *ids]]) if tok.bos_token_id is not None else torch.tensor([ids])
    with torch.no_grad():
        pred = model(input_ids=x).logits[0].argmax(-1).tolist()
    off = x.shape[1] - len(ids)
    rows = []
    for i, t in enumerate(ids):
        rows.append(
            {
                "position": i,
                "token": tok.decode([t]),
                "prediction": tok.decode([pred[i + off]]),
                "next": tok.decode([ids[i + 1]]) if i + 1 < len(ids) else None,
            }
        )
    return rows
