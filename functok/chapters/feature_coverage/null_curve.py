"""Coverage as a curve: the top-k tokens' occurrences against three nulls, over the number of positions.

Table 1's number (the features the top-k tokens' N_k occurrences fire) is compared with the paper's at a
matched scale, and with nulls where the nulls are far from their ceiling. Every curve is read off at
N = N_k / 2^j (j = 0 .. 12) positions:

- top-k: the top-k tokens' occurrences thinned at random to N (each kept with probability q = N / N_k):
  feature f is covered with probability 1 - (1 - q)^m_f, m_f its firings by those occurrences, so the
  expected coverage is exact from the graph's edge counts;
- content positions: the same thinning of the content tokens' occurrences (expected coverage, exact);
- random positions: the first N of each of the `CoverageNull`'s seeded permutations of all positions
  (its min ranks give any N; `null_draws` draws, 2.5 / 97.5 percentiles);
- token identity: whole token types other than the top-k, drawn uniformly without replacement until their
  occurrences reach N, the features of all of them (`n_draws` seeded draws): a null that keeps each
  token's features together, as the top-k tokens' are.

The matched scale: the paper's firings per feature (its 5M tokens x the SAE's L0 / d_sae) against ours
(our firings / d_sae); the top-k curve at q = theirs / ours (1 when ours are fewer) is the reproduction.
"""

from __future__ import annotations

import numpy as np

from functok.chapters.feature_coverage.null import covered_counts

HALVINGS = 12  # the curve's points: N_k, N_k / 2, ..., N_k / 2^12


def grid(n_top: int) -> list[int]:
    """Positions at which every curve is read: N_k / 2^j, at least 1, distinct, ascending."""
    return sorted({max(1, int(n_top // 2**j)) for j in range(HALVINGS + 1)})


def feature_firings(tokens: np.ndarray, features: np.ndarray, counts: np.ndarray, mask: np.ndarray, d_sae: int):
    """int64[d_sae]: firings of each feature by the occurrences of the tokens in `mask` (bool[vocab])."""
    keep = mask[tokens]
    return np.bincount(features[keep], weights=counts[keep], minlength=d_sae).astype(np.int64)


def thinned_coverage(firings: np.ndarray, q: float) -> float:
    """Expected share of d_sae covered when each occurrence is kept with probability q."""
    q = min(max(float(q), 0.0), 1.0)
    return float(np.mean(1.0 - np.power(1.0 - q, firings.astype(np.float64))))


def random_positions(min_rank: np.ndarray, ns: list[int]) -> dict:
    """The random-position null at every N: mean, lo, hi over the permutations (shares of d_sae)."""
    c = covered_counts(min_rank, ns) / min_rank.shape[1]
    lo, hi = np.percentile(c, [2.5, 97.5], axis=0)
    return {"mean": c.mean(axis=0).tolist(), "lo": lo.tolist(), "hi": hi.tolist(), "n_draws": int(c.shape[0])}


def token_identity(
    edges, token_counts: np.ndarray, candidates: np.ndarray, ns: list[int], n_draws: int, seed: int, d_sae: int
):
    """Whole token types from `candidates` in a random order, until their occurrences reach each N: the
    share of d_sae their features cover (mean, lo, hi over `n_draws` seeded orders; nan where the candidates'
    occurrences fall short of N)."""
    tokens, features, _ = edges
    cand = np.zeros(token_counts.shape[0], bool)
    cand[candidates] = True
    keep = cand[tokens]  # only candidates' edges can be drawn: the others never cover a feature
    f_kept = features[keep]
    order_f = np.argsort(f_kept, kind="stable")  # edges grouped by feature, for one reduceat per draw
    f_sorted = f_kept[order_f]
    t_sorted = tokens[keep][order_f]  # gathered once: each draw only looks up its order at these tokens
    starts = np.flatnonzero(np.r_[True, f_sorted[1:] != f_sorted[:-1]]) if f_sorted.size else np.zeros(0, int)
    rng = np.random.default_rng(seed)
    pos = np.zeros(token_counts.shape[0], np.int32)  # a token's place in the draw's order (int32: half the reads)
    out = np.full((n_draws, len(ns)), np.nan)
    for d in range(n_draws):
        perm = rng.permutation(candidates)
        pos[perm] = np.arange(perm.size, dtype=np.int32)
        cum = np.cumsum(token_counts[perm])
        first = np.minimum.reduceat(pos[t_sorted], starts) if starts.size else np.zeros(0, np.int32)
        first = np.sort(first)  # per feature fired by a candidate: the first drawn type that fires it
        for j, n in enumerate(ns):
            i = int(np.searchsorted(cum, n))  # the types 0..i reach n occurrences
            if i < perm.size:
                out[d, j] = np.searchsorted(first, i, side="right") / d_sae
    lo, hi = np.percentile(out, [2.5, 97.5], axis=0)  # nan where any draw fell short
    return {"mean": out.mean(axis=0).tolist(), "lo": lo.tolist(), "hi": hi.tolist(), "n_draws": int(n_draws)}


def null_curves(g, edges, is_function: np.ndarray, top_ids: list[int], min_rank, n_draws: int, seed: int) -> dict:
    """Every curve of the module docstring for one layer's graph (edges: `g.edges()`), at `grid(N_k)` positions."""
    counts = g.token_counts()
    tokens, features, ecounts = edges
    top = np.zeros(counts.shape[0], bool)
    top[top_ids] = True
    content = ~np.asarray(is_function, bool) & ~top & (counts > 0)
    n_top, n_content = int(counts[top].sum()), int(counts[content].sum())
    ns = grid(n_top)
    m_top = feature_firings(tokens, features, ecounts, top, g.d_sae)
    m_content = feature_firings(tokens, features, ecounts, content, g.d_sae)
    out = {
        "n_positions": ns,
        "n_top_positions": n_top,
        "n_content_positions": n_content,
        "top": [thinned_coverage(m_top, n / n_top) for n in ns],
        "content": [thinned_coverage(m_content, n / n_content) if n <= n_content else float("nan") for n in ns],
        "token_identity": token_identity(
            edges, counts, np.flatnonzero(~top & (counts > 0)), ns, n_draws, seed, g.d_sae
        ),
    }
    if min_rank is not None:
        out["random"] = random_positions(min_rank, ns)
    return out


def matched_scale(g, edges, top_ids: list[int], paper_firings_per_feature: float) -> dict:
    """The top-k coverage with the occurrences thinned so that firings per feature match the paper's."""
    tokens, features, ecounts = edges
    top = np.zeros(g.vocab_size, bool)
    top[top_ids] = True
    ours = float(g.n_firings) / g.d_sae
    q = min(1.0, paper_firings_per_feature / ours) if ours > 0 else float("nan")
    return {
        "firings_per_feature": ours,
        "paper_firings_per_feature": float(paper_firings_per_feature),
        "fraction_kept": q,
        "coverage": thinned_coverage(feature_firings(tokens, features, ecounts, top, g.d_sae), q) if q == q else q,
    }
