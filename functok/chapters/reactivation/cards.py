"""Feature cards: what the site shows for every feature chapter 5 names (Neuronpedia's cards, offline, built
with the book from the cache).

`card_data(s, features, concepts)` makes one more pass over the scanned windows (from chapter 2's store on the
real models, so no model runs) and returns per concept its feature's card:
- the top `n_contexts` activating positions, each as the tokens before it, the token and the tokens after;
- the histogram of log10 activation where it fires (fixed bins from 10^-3 to 10^3) and its density (the share of
  positions where it fires);
- the tokens its decoder row promotes most through the unembedding (logit lens: W_dec[f] . W_U, without the
  final norm);
- its episode precision and occurrences, from the concept's results entry.
functok.book.cards renders them into the site, one page per model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from functok.chapters.reactivation.setup import Setup, generator

BINS = np.linspace(-3, 3, 25)  # log10 activation
CARDS = "cards"  # the cards' folder under the site's book/ (functok.book.cards writes it)


def card_data(s: Setup, features: dict[str, int], concepts: dict, encode, n_contexts: int = 12) -> dict:
    """{concept: card} for each concept's feature (see the module); `encode()` yields (window indices, feature
    activations [b, ctx, d_sae]) over the scanned windows (analysis.encode_windows)."""
    x = s.windows.numpy()
    valid = np.ones_like(x, dtype=bool) if s.bos is None else x != s.bos
    feats = sorted(set(features.values()))
    top = {f: np.zeros((0, 3)) for f in feats}  # rows (activation, window, position)
    hist = {f: np.zeros(len(BINS) - 1, dtype=np.int64) for f in feats}
    fired = dict.fromkeys(feats, 0)
    for idx, f in encode():
        a = f.numpy()[:, :, feats] * valid[idx][..., None]
        for j, feat in enumerate(feats):
            w, p = np.nonzero(a[..., j] > 0)
            v = a[w, p, j]
            fired[feat] += int(v.size)
            hist[feat] += np.histogram(np.log10(v), bins=BINS)[0]
            rows = np.concatenate([top[feat], np.stack([v, idx[w], p], 1)])
            top[feat] = rows[np.argsort(-rows[:, 0], kind="stable")[:n_contexts]]
    lens = logit_lens(s, feats)
    n_valid = int(valid.sum())
    out = {}
    for c, feat in features.items():
        v = concepts[c]
        out[c] = {
            "feature": feat,
            "layer": s.layer,
            "sae": s.sae_source,
            "density": fired[feat] / max(n_valid, 1),
            "n_positions": n_valid,
            "histogram": {"log10_edges": BINS.tolist(), "counts": hist[feat].tolist()},
            "contexts": [_context(s, x, int(w), int(p), float(a)) for a, w, p in top[feat]],
            "logit_lens": lens[feat],
            "precision": v.get("precision"),
            "precision_interval": v.get("precision_interval"),
            "n_occurrences": v.get("n_occurrences"),
        }
    return out


def _context(s: Setup, x: np.ndarray, w: int, p: int, a: float, before: int = 12, after: int = 4) -> dict:
    tok = s.model.tokenizer
    row = x[w]
    left = [t for t in row[max(0, p - before) : p] if t != s.bos]
    return {
        "window": w,
        "position": p,
        "activation": a,
        "before": tok.decode(left),
        "token": tok.decode([int(row[p])]),
        "after": tok.decode([t for t in row[p + 1 : p + 1 + after] if t != s.bos]),
    }


def logit_lens(s: Setup, feats: list[int], k: int = 10) -> dict[int, list[dict]]:
    """Per feature, the k tokens whose unembedding row has the largest dot product with its decoder row."""
    import torch

    W_U = generator(s).get_output_embeddings().weight.detach().float().cpu()  # [vocab, d_model]
    tok = s.model.tokenizer
    out = {}
    with torch.no_grad():
        for f in feats:
            logits = W_U @ s.sae.W_dec[f].detach().float().cpu()
            vals, ids = torch.topk(logits, k)
            out[f] = [{"token": tok.decode([int(i)]), "logit": float(v)} for v, i in zip(vals, ids)]
    return out


def card_anchor(feature: int, layer: int | None = None) -> str:
    """A card's anchor on its model's page: `feature-<id>` for the chapter's layer, `layer-<L>-feature-<id>` for
    a depth-scan layer."""
    return f"feature-{feature}" if layer is None else f"layer-{layer}-feature-{feature}"


def card_href(out_dir: str, feature: int, layer: int | None = None) -> str:
    """The link from chapter 5's page in `out_dir` (book/chapters or book/chapters/<run>) to a feature's card
    (`layer`: a depth-scan layer's, see card_anchor)."""
    d = Path(out_dir)
    label = "embedded" if d.name == "chapters" else d.name
    up = "../" if label == "embedded" else "../../"
    return f"{up}{CARDS}/{label}.html#{card_anchor(feature, layer)}"
