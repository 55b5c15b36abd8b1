"""Chapter 5's per-prompt measurements: feature traces along a prompt (Fig 6) and steering the last
function token of a prompt along a feature's decoder direction (Fig 7, Fig 11)."""

from __future__ import annotations

import sys

from functok.chapters.reactivation.setup import Setup
from functok.sae.activations import activations_at


def _prompt_ids(s: Setup, prompt: str) -> list[int]:
    tok = s.model.tokenizer
    ids = tok.encode(prompt, add_special_tokens=False)
    return ([s.bos] if s.bos is not None else []) + ids


def trace(s: Setup, prompt: str, features: dict[str, int]) -> dict:
    """Per-token activations of the features over a prompt (BOS left out): {"tokens", "function",
    "acts": {concept: [per token]}}."""
    import torch

    ids = _prompt_ids(s, prompt)
    acts = activations_at(s.model, s.hook, torch.tensor([ids]), batch_size=1)
    with torch.no_grad():
        f = s.sae.encode(acts.to(s.sae.W_enc.device, s.sae.W_enc.dtype)).float().cpu()[0]
    start = 1 if s.bos is not None else 0
    tok = s.model.tokenizer
    return {
        "prompt": prompt,
        "tokens": [tok.decode([i]) for i in ids[start:]],
        "function": [bool(s.is_function[i]) for i in ids[start:]],
        "acts": {c: [float(v) for v in f[start:, feat]] for c, feat in features.items()},
    }


def steering_vector(s: Setup, feature: int, scale: float, alpha: float):
    """alpha x scale x the feature's unit decoder direction (d_model); scale: the layer's mean activation norm."""

    w = s.sae.W_dec[feature].detach().float().cpu()
    return alpha * scale * w / (w.norm() + 1e-12)


def generate(s: Setup, prompt: str, n_new: int, vector=None, first_logprobs: list | None = None) -> list[int]:
    """Greedy continuation; `vector` is added at the hook to the prompt's last position only, in every
    forward (no KV cache), so the edit stays exactly one activation of the prompt. `first_logprobs`:
    a list that receives the log-probabilities [vocab] of the first generated token."""
    import torch

    ids = _prompt_ids(s, prompt)
    pos = len(ids) - 1
    dev = next(s.model.parameters()).device

    def hook(act, hook):
        act[:, pos, :] += vector.to(act.device, act.dtype)
        return act

    hooks = [(s.hook, hook)] if vector is not None else []
    x = torch.tensor([ids], device=dev)
    with torch.no_grad():
        for _ in range(n_new):
            logits = s.model.run_with_hooks(x, fwd_hooks=hooks) if hooks else s.model(x)
            if first_logprobs is not None and not first_logprobs:
                first_logprobs.append(torch.log_softmax(logits[0, -1].float(), -1).cpu())
            nxt = logits[0, -1].argmax()
            x = torch.cat([x, nxt.view(1, 1)], dim=1)
    return [int(i) for i in x[0, len(ids) :]]


def steer(
    s: Setup,
    prompts: list[str],
    features: dict[str, int],
    scales: dict[str, float],
    alphas: list,
    n_new: int,
    progress: bool = True,
) -> list[dict]:
    """Every (concept, alpha, prompt): the continuation and whether the concept appears in it."""
    from tqdm import tqdm

    tok = s.model.tokenizer
    rows = []
    base_cache: dict[str, tuple] = {}
    jobs = [(c, a, p) for c in features for a in alphas for p in prompts]
    for c, a, p in tqdm(jobs, desc="steering", disable=not progress, file=sys.stderr, mininterval=5):
        if a == 0:
            if p not in base_cache:
                lp: list = []
                base_cache[p] = (generate(s, p, n_new, first_logprobs=lp), lp[0])
            out, lp0 = base_cache[p]
        else:
            lp = []
            out = generate(s, p, n_new, steering_vector(s, features[c], scales[c], float(a)), first_logprobs=lp)
            lp0 = lp[0]
        text = tok.decode(out)
        first = s.concept_tokens[c][0]
        rows.append(
            {
                "concept": c,
                "alpha": a,
                "prompt": p,
                "continuation": text,
                "success": _contains(out, text, s.concept_tokens[c], c),
                "concept_logprob": float(lp0[first]),
                "concept_rank": int((lp0 > lp0[first]).sum()) + 1,
            }
        )
    return rows


def _contains(out: list[int], text: str, ids: list[int], concept: str) -> bool:
    """The concept's token sequence, or its word, appears in the continuation."""
    k = len(ids)
    if any(out[i : i + k] == ids for i in range(len(out) - k + 1)):
        return True
    return concept.strip().lower() in text.lower()
