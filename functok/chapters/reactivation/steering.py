"""Chapter 5's per-prompt measurements: feature traces along a prompt (Fig 6) and steering the last
function token of a prompt along a feature's decoder direction (Fig 7, Fig 11)."""

from __future__ import annotations

import sys

import numpy as np

from functok.chapters.reactivation.config import CONDITIONS
from functok.chapters.reactivation.episodes import occurrences
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


# The 2 x 2 position control (type of the edited token x last or one before last), on the same words: for a
# prompt P ending in a function token ("The capital of"), the function token edited as the last position (P),
# or one before the last (P + suffix: "The capital of the"); the content token before it edited as the last
# position (P without its last token: "The capital") or one before the last (P). Each cell's baseline is the
# unsteered answer of the prompt it edits. "every": P with the vector added at every position.


def control_prompts(ids: list[int], start: int, is_function, suffix: list[int]) -> dict[str, tuple | None]:
    """Per condition, (the prompt's ids, the positions edited), or None where the prompt has no such cell."""
    last = len(ids) - 1
    out: dict[str, tuple | None] = {"last": (ids, [last]), "every": (ids, list(range(start, len(ids))))}
    ends_in_suffix = ids[-len(suffix) :] == suffix
    fn_suffix = bool(suffix) and all(is_function[t] for t in suffix)
    out["function_earlier"] = (ids + suffix, [last]) if fn_suffix and not ends_in_suffix else None
    content_before = last - 1 >= start and not is_function[ids[last - 1]]
    out["content_last"] = (ids[:-1], [last - 1]) if content_before else None
    out["content_earlier"] = (ids, [last - 1]) if content_before else None
    return out


def steering_vector(s: Setup, feature: int, scale: float, alpha: float):
    """alpha x scale x the feature's decoder row (d_model); scale: the feature's typical activation, so alpha 1
    adds what the feature itself adds to the residual stream when it fires as it does on its concept."""
    return alpha * scale * s.sae.W_dec[feature].detach().float().cpu()


def steer(
    s: Setup,
    prompts: list[str],
    features: dict[str, int],
    scales: dict[str, float],
    alphas: list,
    n_new: int,
    progress: bool = True,
    conditions: tuple = CONDITIONS,
    suffix: str = " the",
) -> list[dict]:
    """Every (concept, alpha, condition, prompt) that has its cell: the continuation, whether the concept appears in
    it, and the concept's first-token log-probability; alpha 0 is the unsteered answer of the condition's prompt."""
    from tqdm import tqdm

    tok = s.model.tokenizer
    suffix_ids = tok.encode(suffix, add_special_tokens=False) if suffix else []
    start = 1 if s.bos is not None else 0
    rows = []
    for p in tqdm(prompts, desc="steering", disable=not progress, file=sys.stderr, mininterval=5):
        cells = {k: v for k, v in control_prompts(_prompt_ids(s, p), start, s.is_function, suffix_ids).items()
                 if k in conditions and v is not None}  # fmt: skip
        variants = list(dict.fromkeys(tuple(ids) for ids, _ in cells.values()))  # each prompt's unsteered answer once
        jobs = [(c, a, k) for c in features for a in alphas if a != 0 for k in cells]
        ids_of = [list(v) for v in variants] + [cells[k][0] for _, _, k in jobs]
        edits = [None] * len(variants) + [
            (cells[k][1], steering_vector(s, features[c], scales[c], float(a))) for c, a, k in jobs
        ]
        outs, first = generate_tokens(generator(s), ids_of, n_new, edits=edits, layer=s.layer)
        answer = {(c, a, k): (o, lp) for (c, a, k), o, lp in zip(jobs, outs[len(variants) :], first[len(variants) :])}
        base = {v: (o, lp) for v, o, lp in zip(variants, outs, first)}
        for c in features:
            for a in alphas:
                for k, (ids, pos) in cells.items():
                    out, lp = answer[c, a, k] if a != 0 else base[tuple(ids)]
                    rows.append(_row(tok, s, c, a, k, p, ids, pos, out, lp))
    return rows


def _row(tok, s: Setup, c, a, k, p, ids, pos, out, lp) -> dict:
    text = tok.decode(out)
    first_id = s.concept_tokens[c][0]
    return {
        "concept": c,
        "alpha": a,
        "condition": k,
        "prompt": p,
        "edited": tok.decode(ids[pos[0] : pos[0] + 1]) if len(pos) == 1 else "every position",
        "from_end": len(ids) - 1 - pos[-1],
        "continuation": text,
        "success": _contains(out, text, s.concept_tokens[c], c),
        "concept_logprob": float(lp[first_id]),
        "concept_rank": int((lp > lp[first_id]).sum()) + 1,
    }


def steering_counts(rows: list[dict], concepts, alphas) -> dict:
    """{concept: {condition: {alpha: [successes, prompts]}}} from the steering rows."""
    out: dict = {}
    for c in concepts:
        out[c] = {}
        for k in dict.fromkeys(r["condition"] for r in rows if r["concept"] == c):
            cell = [r for r in rows if r["concept"] == c and r["condition"] == k]
            out[c][k] = {str(a): [sum(r["success"] for r in cell if r["alpha"] == a),
                                  sum(1 for r in cell if r["alpha"] == a)] for a in alphas}  # fmt: skip
    return out


def _contains(out: list[int], text: str, ids: list[int], concept: str) -> bool:
    """The concept's token sequence, or its word, appears in the continuation."""
    k = len(ids)
    if any(out[i : i + k] == ids for i in range(len(out) - k + 1)):
        return True
    return concept.strip().lower() in text.lower()


def unsteered_production(s: Setup, batch_size: int, predict=None) -> dict[str, dict]:
    """Per concept: in the scanned windows, the positions whose next token starts the concept, and how
    many of them the unsteered model predicts greedily (top-1). A model that never produces a concept
    in its own contexts gives a steering test nothing to find (issue 13's precondition). One forward per window
    that holds any concept's start; logits only at those positions (`predict`, default `greedy_at`)."""
    xn = s.windows.numpy()
    starts = {c: occurrences(xn, ids[:1])[:, 1:] for c, ids in s.concept_tokens.items()}  # p predicts x[p + 1]
    need = np.zeros(xn[:, 1:].shape, dtype=bool)
    for st in starts.values():
        need |= st
    top = np.full(need.shape, -1, dtype=np.int64)
    predict = predict or greedy_at(s)
    rows = np.flatnonzero(need.any(1))
    for i in range(0, rows.size, batch_size):
        r = rows[i : i + batch_size]
        w, p = np.nonzero(need[r])
        top[r[w], p] = predict(s.windows[r], w, p)
    out = {}
    for c, ids in s.concept_tokens.items():
        n, hits = int(starts[c].sum()), int(((top == ids[0]) & starts[c]).sum())
        out[c] = {"contexts": n, "predicted": hits, "rate": hits / n if n else float("nan")}
    return out


def greedy_at(s: Setup):
    """(windows [b, T], row, position) -> the greedy next token at those positions: the transformers model's final
    hidden states, unembedded at those positions only (Gemma-3's 262k-word logits at every position cost ~1 s a
    window on 2 cores; a monotone logit soft-cap would not change the argmax)."""
    import torch

    def predict(xb, w, p):
        gen = generator(s)
        with torch.no_grad():
            h = gen.get_decoder()(input_ids=xb.to(next(gen.parameters()).device)).last_hidden_state
            return gen.get_output_embeddings()(h[torch.as_tensor(w), torch.as_tensor(p)]).argmax(-1).cpu().numpy()

    return predict
