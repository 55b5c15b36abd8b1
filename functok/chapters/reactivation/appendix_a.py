"""Steering an instruction-tuned model through its chat template, by the paper's Appendix A procedure.

For each trait (a concept the answer should show, e.g. "Russia"):
1. the trait prompt's activation at the last token of its chat template (the "\\n" that ends the
   assistant header: the paper's last function token) at the chapter's layer;
2. added at the same position of each test prompt (the paper's: Mount Fuji, a university, a tourist
   attraction, ...), the share of greedy answers that show the trait (a regular expression): the raw
   vector's success rate;
3. that activation decomposed by the SAE, features ranked by activation, and the smallest top-k set whose
   reconstruction (sum of activation x decoder row) still steers at least `trait_keep` of the raw vector's
   rate found by binary search (the paper's procedure);
4. the raw activation's success rate at each layer of `trait_layers` too (the paper scans every layer and
   keeps the best; the book reports the scan next to the chapter's layer, where its SAE is);
5. the top-k vector applied at the last function token, at the last content token of the user's message
   (the control the reviewers asked for), and at every position; and scaled by each alpha.
Nothing is tuned to make a trait appear: a trait the raw vector cannot produce is reported as such.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

import numpy as np

from functok.chapters.reactivation.setup import Setup, generator
from functok.core.config import ParamError
from functok.sae.activations import activations_at
from functok.sae.generation import generate as generate_tokens
from functok.sae.models import hook_name


@dataclass
class Prompt:
    text: str
    ids: list[int]
    last_content: int  # position of the last content token of the user's message (-1: none)


def chat_ids(tok, prompt: str) -> list[int]:
    """The prompt as the user's turn of the model's chat template, ending where the answer starts."""
    if not getattr(tok, "chat_template", None):
        raise ParamError("chat_template: the model's tokenizer has no chat template; expected an instruct model")
    ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 may return a BatchEncoding
        ids = ids["input_ids"]
    return [int(i) for i in ids]


def prepare(s: Setup, prompts: list[str]) -> list[Prompt]:
    tok = s.model.tokenizer
    out = []
    for p in prompts:
        ids = chat_ids(tok, p)
        user = tok.encode(p, add_special_tokens=False)
        # the user's message sits just before the assistant header: find its last occurrence
        start = max((i for i in range(len(ids) - len(user) + 1) if ids[i : i + len(user)] == user), default=-1)
        content = [start + j for j, t in enumerate(user) if start >= 0 and not s.is_function[t]]
        out.append(Prompt(p, ids, content[-1] if content else -1))
    return out


def last_activation(s: Setup, ids: list[int], hook: str | None = None):
    import torch

    return activations_at(s.model, hook or s.hook, torch.tensor([ids]), batch_size=1)[0, -1]


def generate(
    s: Setup, prompts: list[list[int]], n_new: int, vector=None, positions: list | None = None, layer: int | None = None
) -> list[str]:
    """Greedy answers to the chat prompts (token ids), batched with a KV cache; `vector` added at `layer`
    (default: the chapter's) at `positions[i]` of prompt i (an empty list: no edit)."""
    edits = None
    if vector is not None and positions:
        edits = [(pos, vector) if pos else None for pos in positions]
    tok = s.model.tokenizer
    outs, _ = generate_tokens(
        generator(s),
        prompts,
        n_new,
        edits=edits,
        layer=s.layer if layer is None else layer,
        eos_token_id=tok.eos_token_id,
    )
    return [tok.decode(o, skip_special_tokens=True) for o in outs]


def shows(text: str, pattern: str) -> bool:
    return re.search(pattern, text, flags=re.IGNORECASE) is not None


def rate(
    s: Setup,
    prompts: list[Prompt],
    pattern: str,
    n_new: int,
    vector=None,
    where: str = "last",
    layer: int | None = None,
) -> dict:
    """Success rate of an edit over the test prompts; where: 'last' (the final function token), 'content'
    (the user's last content token), 'all' (every position of the prompt); layer: the chapter's by default."""
    if where == "last":
        positions = [[len(p.ids) - 1] for p in prompts]
    elif where == "content":
        positions = [[p.last_content] if p.last_content >= 0 else [] for p in prompts]
    else:
        positions = [list(range(len(p.ids))) for p in prompts]
    texts = generate(s, [p.ids for p in prompts], n_new, vector, positions, layer=layer)
    answers = [{"prompt": p.text, "answer": t, "shows_trait": shows(t, pattern)} for p, t in zip(prompts, texts)]
    return {"rate": sum(a["shows_trait"] for a in answers) / len(prompts), "answers": answers}


def topk_vector(s: Setup, f, order: np.ndarray, k: int):
    idx = order[:k]
    w = s.sae.W_dec[idx].detach().float().cpu()
    return (f[idx, None] * w).sum(0)


def appendix_a(s: Setup, cfg, progress: bool = True) -> dict:
    """{trait: {...}} for every trait of cfg.traits (see the module's docstring)."""
    import torch
    from tqdm import tqdm

    tok = s.model.tokenizer
    tests = prepare(s, cfg.test_prompts)
    final = {tok.decode([p.ids[-1]]) for p in tests}
    out = {}
    for name, t in tqdm(cfg.traits.items(), desc="appendix A", disable=not progress, file=sys.stderr):
        pattern = t["pattern"]
        trait_ids = chat_ids(tok, t["prompt"])
        v = last_activation(s, trait_ids)
        (trait_answer,) = generate(s, [trait_ids], cfg.n_new_tokens)
        base = rate(s, tests, pattern, cfg.n_new_tokens)
        raw = rate(s, tests, pattern, cfg.n_new_tokens, v)
        with torch.no_grad():
            f = s.sae.encode(v[None].to(s.sae.W_enc.device, s.sae.W_enc.dtype)).float().cpu()[0]
        active = int((f > 0).sum())
        order = np.argsort(-f.numpy(), kind="stable")
        row = {
            "prompt": t["prompt"],
            "pattern": pattern,
            "trait_answer": trait_answer,
            "trait_prompt_shows_trait": shows(trait_answer, pattern),
            "base": base,
            "raw": raw,
            "active_features": active,
            "search": [],
            # the paper's layer scan: the raw trait activation of each layer, added at that layer
            "layers": {
                str(L): rate(s, tests, pattern, cfg.n_new_tokens, last_activation(s, trait_ids, hook_name(L)), layer=L)[
                    "rate"
                ]
                for L in cfg.trait_layers
            },
        }
        target = cfg.trait_keep * raw["rate"]
        k, found = None, None
        if raw["rate"] > base["rate"] and active:
            lo, hi = 1, active
            while lo <= hi:  # smallest k whose top-k reconstruction reaches the target rate
                mid = (lo + hi) // 2
                r = rate(s, tests, pattern, cfg.n_new_tokens, topk_vector(s, f, order, mid))
                row["search"].append({"k": mid, "rate": r["rate"]})
                if r["rate"] >= target and r["rate"] > base["rate"]:
                    k, found, hi = mid, r, mid - 1
                else:
                    lo = mid + 1
        row["k"] = k
        if k is not None:
            vec = topk_vector(s, f, order, k)
            row["features"] = [int(i) for i in order[:k]]
            row["feature_activations"] = [float(f[i]) for i in order[:k]]
            row["topk_last"] = found
            row["topk_content"] = rate(s, tests, pattern, cfg.n_new_tokens, vec, "content")
            row["topk_every"] = rate(s, tests, pattern, cfg.n_new_tokens, vec, "all")
            row["alphas"] = {
                str(a): rate(s, tests, pattern, cfg.n_new_tokens, float(a) * vec)["rate"] for a in cfg.alphas if a
            }
        out[name] = row
    return {
        "traits": out,
        "final_token": sorted(final),
        "final_is_function": all(s.is_function[p.ids[-1]] for p in tests),
    }
