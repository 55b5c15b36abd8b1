"""Chapter 5's per-prompt measurements: feature traces along a prompt (Fig 6) and steering the last
function token of a prompt along a feature's decoder direction (Fig 7, Fig 11)."""

from __future__ import annotations

import sys

from functok.chapters.reactivation.setup import Setup, generator
from functok.sae.activations import activations_at
from functok.sae.generation import generate as generate_tokens


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


def generate(s: Setup, prompt: str, n_new: int, vectors: list | None = None) -> tuple[list[list[int]], list]:
    """Greedy continuations of `prompt`, one per vector of `vectors` (None in the list, or no list: the
    unsteered model), each vector added at the chapter's layer at the prompt's last position only; batched
    with a KV cache (functok.sae.generation). Returns (continuations, first-token log-probabilities)."""
    ids = _prompt_ids(s, prompt)
    vs = [None] if vectors is None else vectors
    edits = [None if v is None else ([len(ids) - 1], v) for v in vs]
    return generate_tokens(generator(s), [ids] * len(vs), n_new, edits=edits, layer=s.layer)


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
    rows = {}
    jobs = [(c, a) for c in features for a in alphas]
    for p in tqdm(prompts, desc="steering", disable=not progress, file=sys.stderr, mininterval=5):
        # one batch per prompt: the unsteered answer (alpha 0) once, then every steered (concept, alpha)
        steered = [(c, a) for c, a in jobs if a != 0]
        vectors = [None] + [steering_vector(s, features[c], scales[c], float(a)) for c, a in steered]
        outs, first = generate(s, p, n_new, vectors)
        answer = {(c, a): (o, lp) for (c, a), o, lp in zip(steered, outs[1:], first[1:])}
        for c, a in jobs:
            out, lp0 = answer.get((c, a), (outs[0], first[0]))
            text = tok.decode(out)
            first_id = s.concept_tokens[c][0]
            rows[c, a, p] = {
                "concept": c,
                "alpha": a,
                "prompt": p,
                "continuation": text,
                "success": _contains(out, text, s.concept_tokens[c], c),
                "concept_logprob": float(lp0[first_id]),
                "concept_rank": int((lp0 > lp0[first_id]).sum()) + 1,
            }
    return [rows[c, a, p] for c, a in jobs for p in prompts]  # by concept, alpha, then prompt


def _contains(out: list[int], text: str, ids: list[int], concept: str) -> bool:
    """The concept's token sequence, or its word, appears in the continuation."""
    k = len(ids)
    if any(out[i : i + k] == ids for i in range(len(out) - k + 1)):
        return True
    return concept.strip().lower() in text.lower()
